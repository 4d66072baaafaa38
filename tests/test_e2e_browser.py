"""End to end in headless Chromium: start `streamlit run app.py`, use the map as a planner does.

Every request not to 127.0.0.1 is blocked and recorded; the tests assert none was made (except
the opt-in online imagery, whose failure the map must announce), so the page works with no
internet. Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`); skips
cleanly when either is missing. URBANCLIP_UPDATE_SCREENSHOT=1 copies the screenshot to
assets/screenshot.png (the README's).

The map is the component in assets/map/; `window.urbanmap` inside its frame tells where a cell
is on screen and what the view is, so the tests can check the structure of the click loop: a
click fetches none of the map's files again (the grid is not re-sent) and leaves zoom and pan
as they were; the tooltip under the mouse names the cell the panel shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
MAP_FRAME = "iframe[title='urbanclip.ui.urbanmap']"
MAP_FILES = re.compile(r"/component/urbanclip\.ui\.mapdata/")
PANEL = """(prev) => {
  const h = [...document.querySelectorAll('h3')].map(e => e.innerText.trim()).find(t => t.includes(' · cell '));
  if (!h || h === prev || document.querySelector('[data-stale="true"]')) return null;
  return [...document.images].every(i => i.complete) ? h : null;
}"""

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is absent (apt-get install chromium chromium-driver)", allow_module_level=True)

from browser_helpers import browser_page, streamlit_server  # noqa: E402


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    from app_helpers import tiny_workspace

    home = tmp_path_factory.mktemp("e2e-home")
    ws_root = home / "workspaces" / "demo"
    tiny_workspace(ws_root, n=8, px=64)
    return home, ws_root


@pytest.fixture(scope="module")
def app_server(app_home):
    home, ws_root = app_home
    with streamlit_server(home, ws_root) as url:
        yield url, home


@contextlib.contextmanager
def offline_map_page(url: str, blocked: list[str], height: int = 1000):
    """The Map page once the component drew the grid's colours; yields (page, map_frame_element, map_frame)."""
    with browser_page(blocked, height) as page:
        page.goto(url, wait_until="domcontentloaded")
        frame_el = page.wait_for_selector(MAP_FRAME, timeout=240_000)
        frame = frame_el.content_frame()
        frame.wait_for_function("() => document.body.dataset.colour", timeout=120_000)
        yield page, frame_el, frame


def _screen(frame_el, frame, row: int, col: int) -> tuple[float, float]:
    box = frame_el.bounding_box()
    q = frame.evaluate("([r, c]) => urbanmap.cellCentre(r, c)", [row, col])
    return box["x"] + q["x"], box["y"] + q["y"]


def _tooltip_at(page, frame, x: float, y: float) -> str:
    page.mouse.move(x + 3, y + 3)
    page.mouse.move(x, y)
    frame.wait_for_function("() => !document.getElementById('tip').hidden", timeout=10_000)
    return frame.evaluate("() => document.getElementById('tip').firstChild.textContent")


def test_a_fresh_server_lists_only_the_apps_pages(app_server):
    """Streamlit's own page list (the files of pages/) never shows, not even while the first session starts."""
    url, _ = app_server
    blocked: list[str] = []
    with browser_page(blocked) as page:
        page.goto(url, wait_until="commit")
        seen_nav, t_end = False, time.time() + 240
        while time.time() < t_end:
            seen_nav |= page.query_selector("[data-testid='stSidebarNav']") is not None
            if page.query_selector(MAP_FRAME) is not None:
                break
            page.wait_for_timeout(50)
        links = [e.inner_text().split("\n")[-1].strip() for e in page.query_selector_all("[data-testid='stPageLink']")]
        assert not seen_nav, "Streamlit's page list appeared in the sidebar"
        assert links == ["Map", "Compare", "Train"]
    assert blocked == []


def test_click_loop_keeps_the_grid_and_the_view(app_server, tmp_path):
    url, _ = app_server
    blocked: list[str] = []
    with offline_map_page(url, blocked, height=1500) as (page, frame_el, frame):
        grid = frame.evaluate("() => [urbanmap.state.grid.rows, urbanmap.state.grid.cols]")
        assert grid == [8, 8]
        # zoom in twice over the map, as a planner does before clicking a cell
        box = frame_el.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        zoom0 = frame.evaluate("() => urbanmap.view().zoom")
        page.mouse.wheel(0, -240)
        frame.wait_for_function("(z) => urbanmap.view().zoom > z", arg=zoom0, timeout=10_000)
        view = frame.evaluate("() => urbanmap.view()")
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        prev = None
        for row, col in ((3, 4), (4, 2)):
            x, y = _screen(frame_el, frame, row, col)
            assert _tooltip_at(page, frame, x, y).endswith(f"r{row:03d}_c{col:03d}")
            requests.clear()
            page.mouse.click(x, y)
            prev = page.wait_for_function(PANEL, arg=prev, timeout=60_000).json_value()
            city = frame.evaluate("() => urbanmap.state.args.city")
            assert prev == f"{city} · cell {row},{col}"
            page.wait_for_timeout(300)
            # the structure of a click: no map file fetched again, the view as it was, the tooltip agrees
            assert [u for u in requests if MAP_FILES.search(u)] == [], "a click re-sent the map's files"
            after = frame.evaluate("() => urbanmap.view()")
            assert after["zoom"] == view["zoom"] and after["center"] == view["center"]
            assert _tooltip_at(page, frame, x, y).endswith(f"r{row:03d}_c{col:03d}")
        page.get_by_text("Indicators", exact=True).wait_for(timeout=10_000)
        body = page.inner_text("body")
        assert "Source description" in body and "Generated description" in body
        assert "Population" in body and "persons" in body and "log1p" not in body
        page.get_by_text("similarity", exact=False).first.wait_for(timeout=30_000)
        go = page.get_by_role("button", name=re.compile(r"^Go to "))
        go.first.wait_for(timeout=30_000)
        paints = frame.evaluate("() => urbanmap.state.paints")
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, 240)  # back to the whole city for the screenshot
        frame.wait_for_function("(n) => urbanmap.state.paints > n", arg=paints, timeout=10_000)
        page.mouse.move(10, 10)
        page.wait_for_timeout(1000)  # let images settle for the screenshot
        shot = tmp_path / "screenshot.png"
        page.screenshot(path=str(shot), full_page=False)
        # "Go to" a look-alike in another city: the map moves there, at a zoom where a cell is clickable
        target = go.first.inner_text().removeprefix("Go to ").strip()
        go.first.click()
        frame.wait_for_function("(t) => urbanmap.state.args && urbanmap.state.args.selected && "
                                "urbanmap.state.args.selected.id === t && urbanmap.state.grid && "
                                "urbanmap.state.gridName === urbanmap.state.args.grid", arg=target, timeout=60_000)
        frame.wait_for_function("() => document.body.dataset.colour === urbanmap.state.colourName", timeout=60_000)
        assert frame.evaluate("() => urbanmap.cellPx()") >= 40
    assert shot.stat().st_size > 10_000
    if os.environ.get("URBANCLIP_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO / "assets" / "screenshot.png")
    shutil.copyfile(shot, Path(os.environ.get("URBANCLIP_E2E_SHOT", tmp_path / "last.png")))
    assert blocked == [], f"the page tried to reach the internet: {blocked[:5]}"


def test_a_layer_switch_keeps_the_view_and_a_search_jumps_to_a_clickable_zoom(app_server):
    url, _ = app_server
    blocked: list[str] = []
    with offline_map_page(url, blocked) as (page, frame_el, frame):
        box = frame_el.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
        zoom0 = frame.evaluate("() => urbanmap.view().zoom")
        page.mouse.wheel(0, -240)
        frame.wait_for_function("(z) => urbanmap.view().zoom > z", arg=zoom0, timeout=10_000)
        view = frame.evaluate("() => urbanmap.view()")
        colour = frame.evaluate("() => urbanmap.state.colourName")
        page.get_by_text("none", exact=True).click()  # colour cells by: none
        frame.wait_for_function("(c) => urbanmap.state.args.colour !== c", arg=colour, timeout=60_000)
        page.get_by_text("observed", exact=True).click()
        frame.wait_for_function("(c) => urbanmap.state.colourName === c && document.body.dataset.colour === c",
                                arg=colour, timeout=60_000)
        assert frame.evaluate("() => urbanmap.view()") == view  # the layer changed, the view did not
        city = frame.evaluate("() => urbanmap.state.args.city")
        target = f"{city}/r006_c006"
        page.get_by_placeholder(re.compile("city, place, cell id")).fill(target)
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_text(f"Cell {target}", exact=False).first.wait_for(timeout=60_000)
        frame.wait_for_function("(t) => urbanmap.state.args.selected && urbanmap.state.args.selected.id === t",
                                arg=target, timeout=60_000)
        frame.wait_for_function("() => urbanmap.cellPx() >= 40", timeout=10_000)  # a clickable zoom
        c = frame.evaluate("() => urbanmap.cellCentre(6, 6)")
        assert abs(c["x"] - box["width"] / 2) < 30 and abs(c["y"] - box["height"] / 2) < 30  # centred on it
    assert blocked == []


def test_draw_a_rectangle_shows_the_area_offline(app_server, tmp_path):
    """Leaflet.draw (vendored in the component) draws a rectangle; the page adds up the cells under it."""
    url, _ = app_server
    blocked: list[str] = []
    with offline_map_page(url, blocked) as (page, frame_el, frame):
        frame.click("a.leaflet-draw-draw-rectangle")
        x0, y0 = _screen(frame_el, frame, 2, 2)
        x1, y1 = _screen(frame_el, frame, 5, 5)
        page.mouse.move(x0 - 6, y0 - 6)  # just outside the centres of cells (2,2) and (5,5): 4 x 4 cells inside
        page.mouse.down()
        page.mouse.move(x1 + 6, y1 + 6, steps=8)
        page.mouse.up()
        page.get_by_text("cells whose centre is inside the polygon", exact=False).wait_for(timeout=60_000)
        page.get_by_text("Most similar areas in other cities", exact=False).wait_for(timeout=30_000)
        assert "16 cells" in page.inner_text("body")
        frame.wait_for_function("() => urbanmap.state.args.area !== null", timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "area.png"), full_page=False)
        shutil.copyfile(tmp_path / "area.png", Path(os.environ.get("URBANCLIP_E2E_AREA_SHOT", tmp_path / "area-last.png")))
    assert blocked == [], f"the page tried to reach the internet: {blocked[:5]}"


def test_online_imagery_says_when_the_provider_cannot_be_reached(app_server):
    url, _ = app_server
    blocked: list[str] = []
    with offline_map_page(url, blocked) as (page, _, frame):
        page.get_by_text("Online imagery (Esri World Imagery)").click()
        frame.wait_for_function("() => !document.getElementById('notice').hidden", timeout=60_000)
        assert "cannot be reached" in frame.inner_text("#notice")
        assert frame.evaluate("() => urbanmap.state.mosaic !== null")  # the workspace's imagery stays
    assert blocked and all("arcgisonline.com" in u for u in blocked)  # nothing else left the machine


def test_deep_link_to_compare_on_a_fresh_server(app_home):
    """The first session of a fresh server may open /compare directly."""
    home, ws_root = app_home
    blocked: list[str] = []
    with streamlit_server(home, ws_root) as url, browser_page(blocked) as page:
        page.goto(url + "/compare", wait_until="domcontentloaded")
        page.get_by_text("Compare cities", exact=True).wait_for(timeout=240_000)
        page.get_by_text("City totals", exact=True).wait_for(timeout=120_000)
        assert "/compare" in page.url
        assert page.query_selector("[data-testid='stSidebarNav']") is None
    assert blocked == []
