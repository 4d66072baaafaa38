"""A planner's walk through the Map page: one click per land use, the panel as it reads.

Starts `streamlit run app.py` on the demo workspace (built under URBANCLIP_HOME if missing),
opens the Map page in Debian's headless Chromium with every non-local request blocked, clicks
the middle cell of each of the demo's land-use classes in the first city (the demo's hidden
`demo_landuse` column says which cell is which) and prints what the side panel shows: the
generated description with its grounding badge, the source description with its badge, and the
look-alikes in other cities. It saves one screenshot per click (and one scrolled to the look-alikes); `--screenshot` also copies the water click to
assets/screenshot.png (the README's picture).

    python bench/planner_walk.py --out /tmp/walk
    python bench/planner_walk.py --out /tmp/walk --screenshot
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from bench_browser import CHROME_ARGS, CHROMIUM, LOCAL, PANEL_JS, REPO, Server, UrbanMap


def landuse_picks(workspace) -> tuple[str, dict[str, tuple[int, int, str]]]:
    """The first city and, per land-use class, the middle one of its cells (row, col, cell id)."""
    cells = workspace.cells
    if "demo_landuse" not in cells.columns:
        raise SystemExit(f"{workspace.root} has no demo_landuse column: the walk needs the demo workspace")
    city = sorted(cells["city"].unique())[0]
    picks = {}
    for landuse, group in cells[cells["city"] == city].groupby("demo_landuse"):
        r = group.iloc[len(group) // 2]
        picks[str(landuse)] = (int(r["row"]), int(r["col"]), str(r["cell_id"]))
    return city, picks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the screenshots")
    p.add_argument("--screenshot", action="store_true", help="copy the water click to assets/screenshot.png")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    from urbanclip import paths
    from urbanclip.services.context import ensure_workspace

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ws = ensure_workspace()
    city, picks = landuse_picks(ws)
    server = Server(paths.home(), Path(ws.root), out / "streamlit.log")
    blocked: list[str] = []
    try:
        server.wait_healthy()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL)
                               else (blocked.append(route.request.url), route.abort()))
            t0 = time.perf_counter()
            page.goto(server.url, wait_until="domcontentloaded")
            frame_el = page.wait_for_selector(UrbanMap.SELECTOR, timeout=600_000)
            frame = frame_el.content_frame()
            frame.wait_for_function("() => window.urbanmap && urbanmap.state && urbanmap.state.paints > 0",
                                    timeout=600_000)
            print(f"{ws.root}: {city}; map painted {time.perf_counter() - t0:.1f} s after page load")
            prev = None
            for landuse, (row, col, cell_id) in picks.items():
                frame_el.scroll_into_view_if_needed()  # back up from the look-alikes
                page.wait_for_timeout(300)
                box = frame_el.bounding_box()
                q = frame.evaluate("([r, c]) => urbanmap.cellCentre(r, c)", [row, col])
                page.mouse.click(box["x"] + q["x"], box["y"] + q["y"])
                prev = page.wait_for_function(PANEL_JS, arg=prev, timeout=120_000).json_value()
                page.wait_for_timeout(2000)  # the generated description and the look-alikes come last
                body = page.inner_text("body")
                start = body.find(prev)
                end = body.find("Indicators", start)
                panel = "\n".join(line for line in body[start:end].splitlines() if line.strip())
                print(f"\n== {landuse}: {cell_id}\n{panel}")
                page.screenshot(path=str(out / f"{landuse}.png"))
                # the look-alikes below the indicators: their text, and a screenshot scrolled to them
                at = body.find("Most similar cells in other cities", end)
                if at >= 0:
                    lines = [ln for ln in body[at:].splitlines() if ln.strip()][:12]
                    print("\n".join(ln for ln in lines if not ln.startswith("Go to ")))
                    page.get_by_text("Most similar cells in other cities").first.scroll_into_view_if_needed()
                    page.screenshot(path=str(out / f"{landuse}-lookalikes.png"))
            browser.close()
    finally:
        server.close()
    if blocked:
        print(f"blocked non-local requests: {blocked[:5]}")
    if args.screenshot and (out / "water.png").is_file():
        shutil.copyfile(out / "water.png", REPO / "assets" / "screenshot.png")
        print("wrote assets/screenshot.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
