"""The Map page's click loop as a planner sees it, in headless Chromium.

Starts `streamlit run app.py` on a workspace of about `--cells` cells, opens the Map page in
Debian's Chromium through Playwright with every non-local request blocked, and measures:

- first_paint_s:   page load -> the grid drawn on the map (server warm: context already loaded);
- click_median_s:  click on a random cell -> side panel painted (the panel's heading names a new
                   cell, no element is stale, every image is loaded, and the generated
                   description is written); median over all clicks of all sessions;
                   (panel_first_median_s: the same without waiting for the generated description,
                   which the panel draws last);
- bytes_per_click: bytes the page received per click (websocket frames + HTTP bodies and headers,
                   from the click until the network is quiet), median;
- mem_mb_10/50:    Chromium's memory (PSS summed over its processes) after 10 and 50 clicks, each
                   read after a full JavaScript garbage collection (so it shows what is kept).

Workspaces are built once (cached under <home>/bench/): the synthetic demo generator with one
large city of about N - 200 cells (16 px tiles) and two 10x10 cities, so look-alikes have
somewhere to look. The large city is the one the Map page opens. `--workspace W` measures an
existing workspace instead (its first city).

    python bench/bench_browser.py --cells 5000 --clicks 50
    python bench/bench_browser.py --cells 100000 --clicks 50 --sessions 5 --with-training
    python bench/bench_browser.py --cold-start     # fresh home: server start -> demo map painted

Options: --sessions N opens N browser contexts that click concurrently (the median is over all of
them); --with-training launches a demo pretraining the way the Train page does (lower CPU priority, thread
cap) during the measurement. The last line printed is one JSON object. Timings are medians on a shared machine:
rerun to check them; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--js-flags=--expose-gc"]  # memory is read after a full garbage collection: what is kept, not when V8 ran
SMALL_CITIES = {"Mesa Verde": (10, 10), "Pine Hollow": (10, 10)}
BIG_CITY = "Harbor Bay"  # first in alphabetical order, so the Map page opens it; no other demo city lies inside it
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")
VIEWPORT = {"width": 1600, "height": 1000}


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------
# workspaces


def bench_workspace(home: Path, cells: int) -> Path:
    """<home>/bench/ws-<cells>: one large city of about `cells` - 200 cells and two 10x10 cities."""
    root = home / "bench" / f"ws-{cells}"
    if (root / "manifest.json").is_file():
        return root
    from urbanclip.data.demo import build_demo

    side = max(2, round(math.sqrt(max(4, cells - sum(r * c for r, c in SMALL_CITIES.values())))))
    log(f"building the benchmark workspace {root}: {BIG_CITY} {side}x{side} + {len(SMALL_CITIES)} small cities "
        "(16 px tiles; the 100k city needs ~10 GB of RAM and ~2 min)")
    t = time.perf_counter()
    build_demo(root, seed=0, tile_px=16, city_sizes={BIG_CITY: (side, side), **SMALL_CITIES}, overwrite=True)
    log(f"  built in {time.perf_counter() - t:.0f} s")
    return root


# ---------------------------------------------------------------------------------
# the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` in its own process group, killed on exit."""

    def __init__(self, home: Path, workspace: Path | None, log_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, URBANCLIP_HOME=str(home), PYTHONPATH=str(REPO),
                   STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
        env.pop("URBANCLIP_WORKSPACE", None)
        if workspace is not None:
            env["URBANCLIP_WORKSPACE"] = str(workspace)
        self.log = open(log_path, "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"streamlit exited with {self.proc.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(self.url + "/_stcore/health", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"streamlit did not answer within {timeout:.0f} s; see {self.log.name}")

    def close(self) -> None:
        with_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with_group(self.proc, signal.SIGKILL)
        self.log.close()


def with_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process group we started (start_new_session=True), if it is still there."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def start_training(home: Path) -> Path:
    """A demo pretraining run launched as the Train page launches it (services.runs.launch_run: the
    supervisor, lower CPU priority and the thread cap of RunLimits.from_env); returns its run folder."""
    from urbanclip import paths
    from urbanclip.services import runs

    os.environ["URBANCLIP_HOME"] = str(home)
    demo = paths.demo_workspace_dir()
    if not (demo / "manifest.json").is_file():
        from urbanclip.data.demo import build_demo

        log(f"building the demo workspace {demo} for the training run")
        build_demo(demo)
    d = runs.pretrain_defaults()
    name = runs.new_run_name("bench-pretrain")
    args = runs.pretrain_args(runs.resolve_out(name), epochs=int(d["epochs"]), batch_size=int(d["batch_size"]),
                              lr=float(d["lr"]), seed=int(d["seed"]), resume=False)
    limits = runs.RunLimits.from_env()
    log(f"training in the background as the Train page does (nice +{limits.nice}, {limits.threads} thread(s)): "
        f"pretrain --workspace {demo} {' '.join(args)}")
    return runs.launch_run("pretrain", args, name, workspace=demo, limits=limits)


# ---------------------------------------------------------------------------------
# Chromium's memory: PSS of every chromium process started below this one


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def chromium_mem_mb() -> float:
    """Sum of PSS (MB) of the chromium processes descending from this benchmark."""
    kids, todo, total = _children(), [os.getpid()], 0.0
    while todo:
        pid = todo.pop()
        for c in kids.get(pid, []):
            todo.append(c)
            try:
                if "chrom" not in Path(f"/proc/{c}/comm").read_text():
                    continue
                for line in Path(f"/proc/{c}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                continue
    return total


# ---------------------------------------------------------------------------------
# what the page received


class Traffic:
    """Bytes a page received (websocket frames + finished HTTP loads), through the DevTools protocol."""

    def __init__(self):
        self.bytes = 0
        self.last = time.perf_counter()
        self.urls: list[str] = []
        self._req: dict[str, str] = {}

    async def attach(self, context, page) -> None:
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.on("Network.requestWillBeSent", lambda e: self._req.__setitem__(e["requestId"], e["request"]["url"]))
        cdp.on("Network.loadingFinished", self._loaded)

    def _frame(self, e) -> None:
        r = e["response"]
        n = len(r["payloadData"])
        self.bytes += (n * 3) // 4 if r.get("opcode") == 2 else n  # binary frames arrive base64-encoded
        self.last = time.perf_counter()

    def _loaded(self, e) -> None:
        self.bytes += int(e.get("encodedDataLength", 0))
        self.urls.append(self._req.get(e["requestId"], "?"))
        self.last = time.perf_counter()

    async def quiet(self, for_s: float = 0.4, max_s: float = 5.0) -> None:
        t_end = time.perf_counter() + max_s
        while time.perf_counter() < t_end and time.perf_counter() - self.last < for_s:
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------
# the two map renderings: the folium iframe (before issue 13) and the map component (assets/map/)


PANEL_JS = """(prev) => {
  const h = [...document.querySelectorAll('h3')].map(e => e.innerText.trim()).find(t => t.includes(' · cell '));
  if (!h || h === prev) return null;
  if (document.querySelector('[data-stale="true"]')) return null;
  if (![...document.images].every(i => i.complete)) return null;
  return h;
}"""
DESCRIBED_JS = """() => !document.body.innerText.includes('Describing the tile...')"""


class Map:
    """Finds the map, knows when it is painted and where a cell is on screen."""

    kind = "?"

    def __init__(self, page, cells, city_info):
        self.page, self.cells, self.info = page, cells, city_info

    @staticmethod
    async def detect(page, cells, info, timeout_s: float):
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if await page.query_selector(UrbanMap.SELECTOR):
                return UrbanMap(page, cells, info)
            if await page.query_selector(FoliumMap.SELECTOR):
                return FoliumMap(page, cells, info)
            await asyncio.sleep(0.02)
        raise SystemExit("no map appeared on the page")


class FoliumMap(Map):
    """streamlit-folium's iframe (the Map page before issue 13): one SVG path per cell."""

    kind = "folium"
    SELECTOR = "iframe[title='streamlit_folium.st_folium']"

    async def _frame(self):
        el = await self.page.wait_for_selector(self.SELECTOR, timeout=600_000)
        return el, await el.content_frame()

    async def painted(self, timeout_s: float) -> None:
        _, frame = await self._frame()
        await frame.wait_for_selector("path.leaflet-interactive", timeout=timeout_s * 1e3)

    async def click(self, rng: random.Random) -> str:
        el, frame = await self._frame()
        await frame.wait_for_selector("path.leaflet-interactive", timeout=600_000)
        n = await frame.evaluate("() => document.querySelectorAll('path.leaflet-interactive').length")
        box = await el.bounding_box()
        for _ in range(200):
            i = rng.randrange(n)
            q = await frame.evaluate("""(i) => { const p = document.querySelectorAll('path.leaflet-interactive')[i];
                const b = p.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
                return document.elementFromPoint(x, y) === p ? {x, y} : null; }""", i)
            if q is not None:
                await self.page.mouse.click(box["x"] + q["x"], box["y"] + q["y"])
                return heading(self.cells.iloc[i]) if i < len(self.cells) else "?"
        raise SystemExit("no clickable cell on the folium map")


class UrbanMap(Map):
    """The map component (assets/map/): the frame says when it drew the colour layer and where a cell is."""

    kind = "urbanmap"
    SELECTOR = "iframe[title='urbanclip.ui.urbanmap']"

    async def _frame(self):
        el = await self.page.wait_for_selector(self.SELECTOR, timeout=600_000)
        return el, await el.content_frame()

    async def painted(self, timeout_s: float) -> None:
        _, frame = await self._frame()
        await frame.wait_for_function("() => document.body.dataset.colour", timeout=timeout_s * 1e3, polling=20)

    async def click(self, rng: random.Random) -> str:
        el, frame = await self._frame()
        box = await el.bounding_box()
        rows, cols = await frame.evaluate("() => [urbanmap.state.grid.rows, urbanmap.state.grid.cols]")
        for _ in range(500):
            q = await frame.evaluate("""([r, c]) => {
                const g = urbanmap.state.grid, p = urbanmap.cellCentre(r, c), el = document.elementFromPoint(p.x, p.y);
                if (!el || el.closest('.leaflet-control-container') || !g.ids[r * g.cols + c]) return null;
                return {x: p.x, y: p.y, r: r, c: c}; }""", [rng.randrange(rows), rng.randrange(cols)])
            if q is not None and 4 < q["x"] < box["width"] - 4 and 4 < q["y"] < box["height"] - 4:
                await self.page.mouse.click(box["x"] + q["x"], box["y"] + q["y"])
                return f"{self.info.name} · cell {q['r']},{q['c']}"
        raise SystemExit("no cell of the city is on screen")


def heading(cell) -> str:
    """The panel heading the app shows for a cell."""
    return f"{cell['city']} · cell {int(cell['row'])},{int(cell['col'])}"


# ---------------------------------------------------------------------------------
# one session


async def session(browser, url: str, cells, info, clicks: int, seed: int, barrier, results: dict, timeout_s: float):
    context = await browser.new_context(viewport=VIEWPORT)
    blocked: list[str] = []

    async def guard(route):
        u = route.request.url
        if u.startswith(LOCAL):
            await route.continue_()
        else:
            blocked.append(u)
            await route.abort()

    await context.route("**/*", guard)
    page = await context.new_page()
    traffic = Traffic()
    await traffic.attach(context, page)
    t0 = time.perf_counter()
    await page.goto(url, wait_until="commit")
    m = await Map.detect(page, cells, info, timeout_s)
    await m.painted(timeout_s)
    first_paint = time.perf_counter() - t0
    await traffic.quiet()
    rng = random.Random(seed)
    prev, times, firsts, sizes, hits = None, [], [], [], 0
    for k in range(clicks):
        before = traffic.bytes
        t = time.perf_counter()
        aimed = await m.click(rng)
        handle = await page.wait_for_function(PANEL_JS, arg=prev, polling=16, timeout=timeout_s * 1e3)
        firsts.append(time.perf_counter() - t)
        prev = await handle.json_value()
        await page.wait_for_function(DESCRIBED_JS, polling=16, timeout=timeout_s * 1e3)
        times.append(time.perf_counter() - t)
        await traffic.quiet()
        sizes.append(traffic.bytes - before)
        hits += prev == aimed
        if k + 1 in (10, 50):
            await page.evaluate("() => window.gc && window.gc()")
        await barrier(k + 1)
    results.setdefault("first_paint", []).append(first_paint)
    results.setdefault("click", []).extend(times)
    results.setdefault("first", []).extend(firsts)
    results.setdefault("bytes", []).extend(sizes)
    results.setdefault("blocked", []).extend(blocked)
    results["hits"] = results.get("hits", 0) + hits
    results["kind"] = m.kind
    await page.screenshot(path=str(results["shot"]))
    await context.close()


async def measure(url: str, cells, info, clicks: int, sessions: int, timeout_s: float, shot: Path) -> dict:
    from playwright.async_api import async_playwright

    results: dict = {"shot": shot, "mem": {}}
    reached: dict[int, int] = {}
    lock = asyncio.Condition()

    async def barrier(k: int) -> None:
        """Memory is read once every session has made 10 (and 50) clicks."""
        if k not in (10, 50):
            return
        async with lock:
            reached[k] = reached.get(k, 0) + 1
            if reached[k] == sessions:
                await asyncio.sleep(1.0)  # let the last panel settle
                results["mem"][k] = chromium_mem_mb()
                lock.notify_all()
            else:
                await lock.wait_for(lambda: reached[k] == sessions)

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS, headless=True)
        await asyncio.gather(*(session(browser, url, cells, info, clicks, 1000 + i, barrier, results, timeout_s)
                               for i in range(sessions)))
        await browser.close()
    return results


async def warm(url: str, timeout_s: float) -> None:
    """One page load, so the server's context (model, embeddings, probes, map layers) is built."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS, headless=True)
        page = await browser.new_page(viewport=VIEWPORT)
        await page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(LOCAL) else r.abort())
        await page.goto(url, wait_until="commit")
        m = await Map.detect(page, None, None, timeout_s)
        await m.painted(timeout_s)
        await browser.close()


# ---------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=5000, help="cells of the generated workspace (default 5000)")
    ap.add_argument("--clicks", type=int, default=50, help="clicks per session (default 50; memory is read after 10 and 50)")
    ap.add_argument("--sessions", type=int, default=1, help="browser contexts clicking concurrently (default 1)")
    ap.add_argument("--with-training", action="store_true", help="run a demo pretraining in the background meanwhile")
    ap.add_argument("--workspace", type=Path, default=None, help="measure this workspace instead of a generated one")
    ap.add_argument("--home", type=Path, default=None, help="URBANCLIP_HOME of the server (default: yours)")
    ap.add_argument("--cold-start", action="store_true",
                    help="measure a first start instead: empty home, server start -> demo map painted")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the first page (default 1800)")
    ap.add_argument("--shot", type=Path, default=Path(tempfile.gettempdir()) / "bench_browser.png")
    args = ap.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is absent (apt-get install chromium)")
    sys.path.insert(0, str(REPO))
    from urbanclip import paths

    if args.cold_start:
        return cold_start(args)
    home = (args.home or paths.home()).expanduser().resolve()
    os.environ["URBANCLIP_HOME"] = str(home)
    ws_root = args.workspace.resolve() if args.workspace else bench_workspace(home, args.cells)
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(ws_root)
    city = ws.cities[0]
    cells = ws.city_cells(city)[["cell_id", "city", "row", "col", "lat", "lon"]].reset_index(drop=True)
    log(f"workspace {ws_root}: {len(ws.cells)} cells; the map opens {city} ({len(cells)} cells)")
    logs = home / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    server = Server(home, ws_root, logs / "streamlit.log")
    train_run = None
    try:
        server.wait_healthy()
        t = time.perf_counter()
        asyncio.run(warm(server.url, args.timeout))
        log(f"server warm in {time.perf_counter() - t:.1f} s (context + first map)")
        if args.with_training:
            train_run = start_training(home)
            time.sleep(5)
        res = asyncio.run(measure(server.url, cells, ws.manifest.cities[city], args.clicks, args.sessions,
                                  args.timeout, args.shot))
        if train_run is not None:
            from urbanclip.services import runs

            status = runs.run_status(train_run)
            log(f"training run {train_run}: {status.state}, step {status.step}/{status.total_steps} after the "
                "measurement")
    finally:
        if train_run is not None:
            from urbanclip.services import runs

            runs.cancel_run(train_run)
            shutil.rmtree(train_run, ignore_errors=True)
        server.close()
    clicks = res["click"]
    out = {"cells": int(len(ws.cells)), "city_cells": int(len(cells)), "map": res["kind"],
           "first_paint_s": round(statistics.median(res["first_paint"]), 3),
           "click_median_s": round(statistics.median(clicks), 3),
           "click_p90_s": round(sorted(clicks)[int(0.9 * (len(clicks) - 1))], 3),
           "panel_first_median_s": round(statistics.median(res["first"]), 3),
           "bytes_per_click": int(statistics.median(res["bytes"])),
           "mem_mb_10": round(res["mem"][10], 1) if 10 in res["mem"] else None,
           "mem_mb_50": round(res["mem"][50], 1) if 50 in res["mem"] else None,
           "clicks": len(clicks), "aimed_cell_hit": round(res["hits"] / len(clicks), 2), "sessions": args.sessions, "with_training": args.with_training,
           "blocked_requests": len(res["blocked"])}
    log(f"screenshot: {args.shot}")
    print(json.dumps(out))
    return 0


def cold_start(args) -> int:
    """Empty URBANCLIP_HOME: server start -> the demo built, the model loaded, the map painted."""
    home = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    server = Server(home, None, home / "streamlit.log")
    try:
        server.wait_healthy()
        asyncio.run(warm(server.url, args.timeout))
        took = time.perf_counter() - server.started
    finally:
        server.close()
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({"cold_start_s": round(took, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
