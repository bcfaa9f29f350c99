"""The FL-API client against a real HTTP server that breaks the contract on purpose."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flip_pipelines.fl_api.client import (
    FLApiClient,
    FLApiContractError,
    FLApiError,
    FLApiNotFoundError,
    FLApiUnavailableError,
)
from flip_pipelines.fl_api.schemas import RoundMetric
from flip_pipelines.local.processes import free_port

RESPONSES: dict[tuple[str, str], tuple[int, object]] = {
    ("GET", "/list_jobs"): (200, {"jobs": []}),  # an object where a list belongs
    ("GET", "/check_client_status"): (200, [{"name": "site-1"}]),  # items missing fields
    ("POST", "/submit_job/m1"): (200, ""),  # an empty job id
    ("POST", "/submit_job/m2"): (200, {"job_id": "x"}),  # not a string
    ("GET", "/check_server_status"): (503, {"detail": "NVFlare server unreachable"}),
    ("DELETE", "/abort_job/zzz"): (404, {"detail": "job zzz not found"}),
    ("GET", "/run_logs/1"): (500, "<html>Internal Server Error</html>"),
    ("GET", "/health"): (200, "not json at all"),
    # /job_metrics: FLIP's FL APIs have no such route (FastAPI answers 404 "Not Found", or 405 where a path matches)
    ("GET", "/job_metrics/on-flip-nvflare"): (404, {"detail": "Not Found"}),
    ("GET", "/job_metrics/on-flip-flower"): (405, {"detail": "Method Not Allowed"}),
    ("GET", "/job_metrics/gone"): (404, {"detail": "unknown job gone"}),  # ours: the job does not exist
    ("GET", "/job_metrics/broken"): (500, {"detail": "internal error (KeyError)"}),
    ("GET", "/job_metrics/misshapen"): (200, [{"round": "first", "client": "site-1", "label": "x", "value": 1}]),
    ("GET", "/job_metrics/fine"): (200, [{"round": 1, "client": "site-1", "label": "val_loss", "value": 0.5}]),
}


class MisbehavingHandler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        status, body = RESPONSES.get((self.command, self.path.split("?")[0]), (404, {"detail": "no route"}))
        data = body.encode() if isinstance(body, str) and body.startswith("<") else json.dumps(body).encode()
        if body == "not json at all":
            data = b"not json at all"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def misbehaving_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), MisbehavingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_non_conforming_responses_fail_loudly(misbehaving_server: str) -> None:
    with FLApiClient(misbehaving_server, "token-token-token-token") as client:
        with pytest.raises(FLApiContractError, match="/list_jobs"):
            client.list_jobs()
        with pytest.raises(FLApiContractError, match="/check_client_status"):
            client.check_client_status()
        with pytest.raises(FLApiContractError, match="empty job id"):
            client.submit_job("m1")
        with pytest.raises(FLApiContractError, match="/submit_job/m2"):
            client.submit_job("m2")
        with pytest.raises(FLApiContractError, match="/health"):
            client.health()


def test_errors_are_classified_for_retries(misbehaving_server: str) -> None:
    with FLApiClient(misbehaving_server, "token-token-token-token") as client:
        with pytest.raises(FLApiUnavailableError, match="unreachable") as unavailable:
            client.check_server_status()
        assert unavailable.value.status_code == 503
        with pytest.raises(FLApiNotFoundError, match="job zzz not found"):
            client.abort_job("zzz")
        with pytest.raises(FLApiError) as server_error:
            client.run_logs("1")
        assert server_error.value.status_code == 500 and not isinstance(server_error.value, FLApiUnavailableError)
    nobody = FLApiClient(f"http://127.0.0.1:{free_port()}", "token-token-token-token", timeout=2)
    with nobody, pytest.raises(FLApiUnavailableError, match="unreachable"):
        nobody.list_jobs()


def test_job_metrics_where_the_route_is_missing_is_empty_and_other_errors_raise(misbehaving_server: str) -> None:
    with FLApiClient(misbehaving_server, "token-token-token-token") as client:
        assert client.job_metrics("on-flip-nvflare") == []
        assert client.job_metrics("on-flip-flower") == []
        assert client.job_metrics("unrouted") == []  # any 404 but our unknown-job answer means "no such route"
        with pytest.raises(FLApiNotFoundError, match="unknown job gone"):
            client.job_metrics("gone")
        with pytest.raises(FLApiError) as server_error:
            client.job_metrics("broken")
        assert server_error.value.status_code == 500
        with pytest.raises(FLApiContractError, match="/job_metrics/misshapen"):
            client.job_metrics("misshapen")
        assert client.job_metrics("fine") == [RoundMetric(round=1, client="site-1", label="val_loss", value=0.5)]
