"""A FLIP hub database per test: FLIP's schema built once by FLIP's migrations, copied, seeded as FLIP seeds it."""

import uuid

import pytest

from flip_pipelines.domain.schema import FLIP_HEAD
from flip_pipelines_tests.flip_hub.history import create_hub_database
from flip_pipelines_tests.flip_hub.hub import FlipHub

NETS = {"net-nvflare": ("http://127.0.0.1:18201", "NVFLARE"), "net-flower": ("http://127.0.0.1:18202", "FLOWER")}
TRUSTS = {"Trust_1": "site-1", "Trust_2": "site-2"}

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


@pytest.fixture(params=list(SUPPORTED_HUBS))
def supported_flip_hub(request: pytest.FixtureRequest, postgres_server_url: str) -> FlipHub:
    """A seeded FLIP hub at each schema this project uses as it is (``SUPPORTED_HUBS``)."""
    template = request.getfixturevalue(SUPPORTED_HUBS[request.param][0])
    return FlipHub(new_flip_database(postgres_server_url, template)).seed(NETS, TRUSTS)
