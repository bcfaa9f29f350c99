"""A FLIP hub database per test: FLIP's schema built once by FLIP's migrations, copied, seeded as FLIP seeds it."""

import uuid

import pytest

from flip_pipelines.local.postgres import create_database
from flip_pipelines_tests.flip_hub.hub import FlipHub

NETS = {"net-nvflare": ("http://127.0.0.1:18201", "NVFLARE"), "net-flower": ("http://127.0.0.1:18202", "FLOWER")}
TRUSTS = {"Trust_1": "site-1", "Trust_2": "site-2"}


def new_flip_database(postgres_server_url: str, template: str) -> str:
    return create_database(postgres_server_url, f"fh_{uuid.uuid4().hex[:12]}", template=template)


@pytest.fixture
def flip_hub(postgres_server_url: str, flip_hub_template: str) -> FlipHub:
    return FlipHub(new_flip_database(postgres_server_url, flip_hub_template)).seed(NETS, TRUSTS)


