"""Shared by the browser tests: a `streamlit run app.py` server on a free port and a Chromium page
that blocks (and records) every request not to 127.0.0.1. Import after skipping on a missing
Playwright or Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(home: Path, ws_root: Path, **env_extra: str):
    """A fresh `streamlit run app.py` on a free port (its own process group); yields its URL."""
    port = _free_port()
    env = dict(os.environ, URBANCLIP_HOME=str(home), URBANCLIP_WORKSPACE=str(ws_root),
               PYTHONPATH=str(REPO), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **env_extra)
    log = open(home / f"streamlit-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"streamlit did not start; log: {Path(log.name).read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def browser_page(blocked: list[str], height: int = 1000, width: int = 1600):
    """Chromium with every request not to 127.0.0.1 blocked (and recorded in `blocked`)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS, headless=True)
        page = browser.new_page(viewport={"width": width, "height": height})

        def guard(route):
            u = route.request.url
            if u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")):
                route.continue_()
            else:
                blocked.append(u)
                route.abort()

        page.context.route("**/*", guard)
        try:
            yield page
        finally:
            browser.close()


