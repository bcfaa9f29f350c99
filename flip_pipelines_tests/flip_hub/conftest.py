"""A FLIP hub database per test: FLIP's schema built once by FLIP's migrations, copied, seeded as FLIP seeds it;
and ``flip-pipelines hub-api serve`` on it, for FL servers to push to."""

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flip_pipelines.domain.schema import FLIP_HEAD
from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until
from flip_pipelines_tests.flip_hub.history import create_hub_database
from flip_pipelines_tests.flip_hub.hub import FlipHub

NETS = {"net-nvflare": ("http://127.0.0.1:18201", "NVFLARE"), "net-flower": ("http://127.0.0.1:18202", "FLOWER")}
TRUSTS = {"Trust_1": "site-1", "Trust_2": "site-2"}
KEY = f"internal-{uuid.uuid4().hex}"  # the hub API's internal service key, sent by FL servers that push

# every schema this project uses as it is: (test id, session template fixture, db upgrade's timestamps wording)
SUPPORTED_HUBS = {
    FLIP_HEAD: ("flip_hub_template", "timestamps naive UTC (timestamp without time zone)"),
    f"{FLIP_HEAD}-after-b7e3c1d94a20": (
        "flip_hub_timestamptz_template",
        "timestamps timezone-aware UTC in its 12 timestamptz columns of 13, naive UTC in the rest"),
}


def new_flip_database(postgres_server_url: str, template: str) -> str:
    return create_hub_database(postgres_server_url, f"fh_{uuid.uuid4().hex[:12]}", template=template)


@pytest.fixture
def flip_hub(postgres_server_url: str, flip_hub_template: str) -> FlipHub:
    return FlipHub(new_flip_database(postgres_server_url, flip_hub_template)).seed(NETS, TRUSTS)


@pytest.fixture
def hub_api(flip_hub: FlipHub, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "FLIP_DATABASE_URL": flip_hub.url, "FLIP_INTERNAL_SERVICE_KEY": KEY,
           "FLIP_DATA_DIR": str(tmp_path)}
    log = tmp_path / "hub_api.log"
    process = start_process([str(Path(sys.executable).parent / "flip-pipelines"), "hub-api", "serve",
                             "--port", str(port)], log_path=log, env=env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"hub API exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=30, interval=0.2, what="the hub API")
    try:
        yield base
    finally:
        stop_pid(process.pid)


@pytest.fixture(params=list(SUPPORTED_HUBS))
def supported_flip_hub(request: pytest.FixtureRequest, postgres_server_url: str) -> FlipHub:
    """A seeded FLIP hub at each schema this project uses as it is (``SUPPORTED_HUBS``)."""
    template = request.getfixturevalue(SUPPORTED_HUBS[request.param][0])
    return FlipHub(new_flip_database(postgres_server_url, template)).seed(NETS, TRUSTS)
