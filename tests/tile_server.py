"""A tile server on 127.0.0.1 in a thread, for importer tests (never the internet).

Serves files under `root` by URL path. Bad days on demand: `fail_first` answers
each path's first request with 500; `outage_after=N` answers 503 to everything
after N tiles were served; `hold` (a threading.Event) makes every request wait
until it is set, and `waiting` is set as soon as one request is waiting.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path


class TileServer:
    def __init__(self, root: Path, fail_first: bool = False, outage_after: int | None = None, port: int = 0,
                 hold: threading.Event | None = None, suffix: str = ".png", order: str = "{z}/{y}/{x}"):
        self.requests: list[tuple[str, str]] = []
        self.waiting = threading.Event()
        seen: set[str] = set()
        served = [0]
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                outer.requests.append((self.path, self.headers.get("User-Agent", "")))
                if hold is not None:
                    outer.waiting.set()
                    hold.wait()
                if fail_first and self.path not in seen:
                    seen.add(self.path)
                    self.send_error(500)
                    return
                if outage_after is not None and served[0] >= outage_after:
                    self.send_error(503, "Service Unavailable")
                    return
                f = root / self.path.lstrip("/")
                if not f.is_file():
                    self.send_error(404)
                    return
                body = f.read_bytes()
                served[0] += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg" if f.suffix == ".jpg" else "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.template = f"http://127.0.0.1:{self.port}/{order}{suffix}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "TileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
