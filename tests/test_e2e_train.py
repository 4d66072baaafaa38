"""End to end in headless Chromium: the Train page starts a pretraining run, cancels it, and resumes it
in the same Output folder (which keeps what was typed); the run lists refresh by themselves.

Uses Debian's /usr/bin/chromium through Playwright like tests/test_e2e_browser.py, and skips the
same way when either is missing. Every request not to 127.0.0.1 is blocked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is absent (apt-get install chromium chromium-driver)", allow_module_level=True)

from browser_helpers import browser_page, streamlit_server  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app_helpers import tiny_workspace

    home = tmp_path_factory.mktemp("e2e-train-home")
    ws_root = home / "workspaces" / "demo"
    tiny_workspace(ws_root, n=6, px=64)
    with streamlit_server(home, ws_root, URBANCLIP_RUN_THREADS="1") as url:
        yield url, home
    from urbanclip.services import runs

    for d in (home / "runs").glob("*"):  # never leave a run behind
        runs.cancel_run(d)


def test_cancel_and_resume_a_pretraining_run_from_the_train_page(server, tmp_path):
    from urbanclip.model.checkpoint import TRAIN_STATE_FILE, read_checkpoint

    url, home = server
    run = home / "runs" / "browser-run"
    blocked: list[str] = []
    with browser_page(blocked, height=1600, width=1400) as page:
        page.goto(url + "/train", wait_until="domcontentloaded")
        page.get_by_text("Launch a run").first.wait_for(timeout=120_000)
        page.get_by_role("textbox", name="Output folder").fill("browser-run")
        page.get_by_role("spinbutton", name="Epochs").fill("60")
        page.get_by_role("spinbutton", name="Batch size").fill("8")
        page.get_by_role("button", name="Start run").click()
        page.get_by_text("Started pretrain", exact=False).wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"step [1-9]\d*/\d+")).first.wait_for(timeout=240_000)
        page.get_by_role("button", name="Cancel").click()
        # the page refreshes its lists by itself when the run ends
        page.get_by_text(re.compile(r"pretrain · browser-run · interrupted")).wait_for(timeout=120_000)
        step = read_checkpoint(run / TRAIN_STATE_FILE)["step"]
        assert page.get_by_role("textbox", name="Output folder").input_value() == "browser-run"
        page.get_by_text("Resume from the folder's last checkpoint").click()
        page.get_by_role("textbox", name="Extra arguments").fill(f"--max-steps {step + 2}")
        page.get_by_role("button", name="Start run").click()
        page.get_by_text("Started pretrain", exact=False).wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"pretrain · browser-run · completed")).wait_for(timeout=240_000)
        page.screenshot(path=str(tmp_path / "train.png"), full_page=True)
    starts = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"start"' in line]
    assert len(starts) == 2 and starts[1]["resumed"] is True and starts[1]["start_step"] == step
    assert read_checkpoint(run / TRAIN_STATE_FILE)["step"] == step + 2
    assert "--resume" in json.loads((run / "run.json").read_text())["argv"]
    assert blocked == [], f"the page tried to reach the internet: {blocked[:5]}"
