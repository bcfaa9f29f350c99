"""A FLIP hub database per test: FLIP's schema built once by FLIP's migrations, copied, seeded as FLIP seeds it."""

import uuid

import pytest

from flip_pipelines.local.postgres import create_database
from flip_pipelines_tests.flip_hub.hub import FlipHub
from flip_pipelines_tests.flip_hub.migrations import build_flip_hub_schema

NETS = {"net-nvflare": ("http://127.0.0.1:18201", "NVFLARE"), "net-flower": ("http://127.0.0.1:18202", "FLOWER")}
TRUSTS = {"Trust_1": "site-1", "Trust_2": "site-2"}


@pytest.fixture(scope="session")
def flip_hub_template(postgres_server_url: str) -> str:
    """FLIP's schema at its head, built once by FLIP's migrations, copied for each test."""
    name = f"flip_hub_{uuid.uuid4().hex[:8]}"
    build_flip_hub_schema(create_database(postgres_server_url, name))
    return name


def new_flip_database(postgres_server_url: str, template: str) -> str:
    return create_database(postgres_server_url, f"fh_{uuid.uuid4().hex[:12]}", template=template)


@pytest.fixture
def flip_hub(postgres_server_url: str, flip_hub_template: str) -> FlipHub:
    return FlipHub(new_flip_database(postgres_server_url, flip_hub_template)).seed(NETS, TRUSTS)


