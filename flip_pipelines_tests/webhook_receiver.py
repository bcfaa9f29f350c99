"""A chat webhook for tests: a real HTTP server on a port of its own that records every alert posted to it and
answers what the test says (200, 503, or 400 for chosen runs); closed until ``open``, so a sender meets a refused
connection first."""

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(ThreadingHTTPServer):
    """Bound at once but not listening until ``open``: connections to its port are refused meanwhile."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server_bind()
        self.posts: list[dict] = []
        self.status = 200
        self.refused_runs: set[str] = set()  # answered 400, as Slack answers a payload it rejects
        self.serving = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hooks/T000/B000"

    def open(self) -> None:
        self.server_activate()
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.serving = True

    def close(self) -> None:
        if self.serving:
            self.shutdown()
        self.server_close()

    def answered(self, status: int) -> Counter[str]:
        """How many posts of each run were answered ``status``."""
        return Counter(p["run_id"] for p in self.posts if p["status"] == status)


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        run_id = next(f["text"].removeprefix("*Run*\n") for f in body["blocks"][1]["fields"]
                      if f["text"].startswith("*Run*\n"))
        status = 400 if run_id in self.server.refused_runs else self.server.status
        self.server.posts.append({"content_type": self.headers["Content-Type"], "json": body, "run_id": run_id,
                                  "status": status})
        self.send_response(status)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass
