"""End to end in headless Chromium: start `streamlit run app.py`, click a cell, read the panel.

Every request not to 127.0.0.1 is blocked and recorded; the test asserts none was
made, so the page (Leaflet, basemap, panel) works with no internet. Uses Debian's
/usr/bin/chromium through Playwright (never `playwright install`); skips cleanly
when either is missing. URBANCLIP_UPDATE_SCREENSHOT=1 copies the screenshot to
assets/screenshot.png (the README's).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is absent (apt-get install chromium chromium-driver)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    from app_helpers import tiny_workspace

    home = tmp_path_factory.mktemp("e2e-home")
    ws_root = home / "workspaces" / "demo"
    tiny_workspace(ws_root, n=8, px=64)
    port = _free_port()
    env = dict(os.environ, URBANCLIP_HOME=str(home), URBANCLIP_WORKSPACE=str(ws_root),
               PYTHONPATH=str(REPO), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = open(home / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail(f"streamlit did not start; log: {(home / 'streamlit.log').read_text()[-2000:]}")
    yield url, home
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@contextlib.contextmanager
def offline_map_page(url: str, blocked: list[str], height: int = 1000):
    """Chromium on the app with every request not to 127.0.0.1 blocked (and recorded in
    `blocked`); yields (page, map_frame_element, map_frame) once Leaflet drew the grid."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": height})

        def guard(route):
            u = route.request.url
            if u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")):
                route.continue_()
            else:
                blocked.append(u)
                route.abort()

        page.context.route("**/*", guard)
        page.goto(url, wait_until="domcontentloaded")
        # the map lives in the streamlit-folium iframe; wait for Leaflet's cell paths
        frame_el = page.wait_for_selector("iframe[title='streamlit_folium.st_folium']", timeout=240_000)
        frame = frame_el.content_frame()
        frame.wait_for_selector("path.leaflet-interactive", timeout=60_000)
        try:
            yield page, frame_el, frame
        finally:
            browser.close()


def test_click_a_cell_shows_panel_offline(app_server, tmp_path):
    url, home = app_server
    blocked: list[str] = []
    with offline_map_page(url, blocked, height=1500) as (page, _, frame):
        frame.wait_for_selector("img.leaflet-image-layer", state="attached", timeout=30_000)
        cells = frame.query_selector_all("path.leaflet-interactive")
        assert len(cells) >= 64  # 8x8 grid of the first city
        cells[len(cells) // 2 + 3].click()
        page.get_by_text("Most similar cells in other cities", exact=True).wait_for(timeout=60_000)
        page.get_by_text("Indicators", exact=True).wait_for(timeout=10_000)
        body = page.inner_text("body")
        assert "Source description" in body or "Generated description" in body
        assert "Population" in body and "persons" in body
        page.get_by_text("similarity", exact=False).first.wait_for(timeout=30_000)
        page.get_by_role("button", name=re.compile(r"^Go to ")).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)  # let images settle for the screenshot
        shot = tmp_path / "screenshot.png"
        page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    if os.environ.get("URBANCLIP_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO / "assets" / "screenshot.png")
    shutil.copyfile(shot, Path(os.environ.get("URBANCLIP_E2E_SHOT", tmp_path / "last.png")))
    assert blocked == [], f"the page tried to reach the internet: {blocked[:5]}"


def test_draw_a_rectangle_shows_the_area_offline(app_server, tmp_path):
    """Leaflet.draw (vendored, data: URIs) draws a rectangle; the page adds up the cells under it."""
    url, _ = app_server
    blocked: list[str] = []
    with offline_map_page(url, blocked) as (page, frame_el, frame):
        tool = frame.wait_for_selector("a.leaflet-draw-draw-rectangle", timeout=30_000)
        tool.click()
        box = frame_el.bounding_box()
        x0, y0 = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + box["width"] * 0.2, y0 + box["height"] * 0.2, steps=8)
        page.mouse.up()
        page.get_by_text("cells whose centre is inside the polygon", exact=False).wait_for(timeout=60_000)
        page.get_by_text("Most similar areas in other cities", exact=False).wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "area.png"), full_page=False)
        shutil.copyfile(tmp_path / "area.png", Path(os.environ.get("URBANCLIP_E2E_AREA_SHOT", tmp_path / "area-last.png")))
    assert blocked == [], f"the page tried to reach the internet: {blocked[:5]}"
