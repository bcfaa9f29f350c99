"""A real HTTP server in front of a real FL API that fails on purpose: for tests of transient failures.

Requests pass through unchanged, except the first ``failures`` requests whose path starts with ``path_prefix``:
with ``forward_first=False`` they are answered 503 without reaching the FL API (the service was briefly down);
with ``forward_first=True`` they reach the FL API and the caller still gets 503 (the answer was lost on the way
back, the harder case for exactly-once submission).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from flip_pipelines.local.processes import free_port

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class FlakyProxy:
    upstream: str
    path_prefix: str
    failures: int = 1
    forward_first: bool = False
    seen: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    url: str = ""

    def _should_fail(self, path: str) -> bool:
        with self._lock:
            self.seen.append(path)
            if path.startswith(self.path_prefix) and len(self.failed) < self.failures:
                self.failed.append(path)
                return True
            return False

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fail = proxy._should_fail(self.path.split("?")[0])
                if not fail or proxy.forward_first:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream = httpx.request(self.command, proxy.upstream + self.path, headers=headers,
                                             content=body, timeout=120)
                if fail:
                    status, data = 503, b'{"detail":"injected: service unavailable"}'
                    headers = {"content-type": "application/json"}
                else:
                    status, data = upstream.status_code, upstream.content
                    headers = {k.lower(): v for k, v in upstream.headers.items()
                               if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _relay

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator["FlakyProxy"]:
        self._lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), self.handler())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


@contextmanager
def hanging_server() -> Iterator[str]:
    """A real server that accepts connections, reads what it is sent and never answers: an FL API that hangs.
    Yields its URL; every connection is closed when the block ends."""
    import socket

    listener = socket.create_server(("127.0.0.1", free_port()))
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()
