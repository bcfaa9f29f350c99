"""Fixtures for real-browser tests of the Dagster UI.

- ``ui_stack`` (session): Dagster as production runs it (``local.dagster.LocalDagster``: gRPC code server,
  daemon, webserver on a free port) serving this project's location, on a PostgreSQL queue database copied from
  the session's migrated template and buckets on the session's S3 server — the helpers every other test uses.
  Started once per worker and only when a UI test asks for it.
- ``ui_nets`` (session): registers the session's NVFlare and Flower FL APIs (and trusts ``Trust_1``/``Trust_2``
  for their ``site-1``/``site-2``) in that database, for tests that launch ``train_model`` for real.
- ``browser`` (session) and ``page`` (per test): Debian's ``/usr/bin/chromium`` driven by Playwright, a fresh
  context per test at a 1600x1000 viewport whose base URL is the webserver, so ``page.goto("/runs")`` works.
  A failed test leaves ``<test name>-FAILED.png`` in the artifacts folder (``harness.artifacts_dir``).

Scheduling: every test under ``ui/`` joins the "own-stacks" xdist group (the worker that runs ``make dev``'s
stack and the production topology, never the daemon's timing-sensitive tests) and is marked slow. They are moved
to the end of the session, after that worker's other stacks have stopped, when the session's FL deployments (for
``ui_nets``) are up anyway.
The marker is added as each item is collected, since xdist reads it in its own ``pytest_collection_modifyitems``,
which runs before a conftest's. With pytest 9.2.0 no ``xdist_group`` takes effect at all (pytest-xdist#1386:
xdist still writes the old node id field), so there the UI tests are shared out like any other test.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from flip_pipelines.local.dagster import LocalDagster
from flip_pipelines.local.postgres import create_database
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi, hub_environment
from flip_pipelines_tests.ui.harness import CHROMIUM, DEFAULT_TIMEOUT, REPO, VIEWPORT, UIStack, artifacts_dir, shot

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

HERE = Path(__file__).resolve().parent
UI_GROUP = "own-stacks"
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def _is_ui_test(item: pytest.Item) -> bool:
    return HERE in item.path.parents


def pytest_itemcollected(item: pytest.Item) -> None:
    """Called for the tests under this folder only. Markers go on here, before xdist turns the group marker into
    a node id suffix in its own ``pytest_collection_modifyitems``."""
    item.add_marker(pytest.mark.xdist_group(UI_GROUP))
    item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)  # after the root conftest has sorted the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items[:] = [item for item in items if not _is_ui_test(item)] + [item for item in items if _is_ui_test(item)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so the ``page`` fixture knows at teardown whether the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _instance_config(work: Path) -> Path:
    """The repository's instance (the one ``make dev`` uses), with the first-visit "Join the community" modal and
    telemetry off whatever that file says: a modal over the page would hide what the tests look for."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text()) or {}
    config["nux"] = {"enabled": False}
    config["telemetry"] = {"enabled": False}
    path = work / "instance.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory: pytest.TempPathFactory, s3_server: LocalS3, postgres_server_url: str,
             postgres_template: str) -> Iterator[UIStack]:
    work = tmp_path_factory.mktemp("ui")
    url = create_database(postgres_server_url, f"ui_{uuid.uuid4().hex[:8]}", template=postgres_template)
    env, buckets = hub_environment(work, url, s3_server, "ui")
    env["FLIP_MONITOR_POLL_SECONDS"] = "1"  # a launched training's run page moves on within a second of the FL job
    dagster = LocalDagster(workdir=work, env=env, instance_config=_instance_config(work))
    env["FLIP_DAGSTER_UI_URL"] = dagster.url  # links in alerts point at this webserver
    stack = UIStack(dagster=dagster, database_url=url, env=env, buckets=buckets, work=work)
    try:
        dagster.start()
        yield stack
    finally:
        dagster.stop()
        stack.close()


@pytest.fixture(scope="session")
def ui_nets(ui_stack: UIStack, nvflare_fl_api: RunningFLApi, flower_fl_api: RunningFLApi) -> dict[str, str]:
    """Net name → FL API URL, registered in ``ui_stack``'s database (idempotent; the sensors see them at their
    next tick). Requesting it puts the test after the modules that need no FL deployment."""
    import contextlib

    from flip_pipelines.db import registry
    from flip_pipelines.domain.enums import FLBackend
    from flip_pipelines.domain.errors import ConflictError

    nets = {"net-nvflare": (nvflare_fl_api.base_url, FLBackend.NVFLARE),
            "net-flower": (flower_fl_api.base_url, FLBackend.FLOWER)}
    with ui_stack.session() as session:
        for name, (endpoint, backend) in nets.items():
            registry.upsert_net(session, name, endpoint, backend)
        for trust, slot in (("Trust_1", "site-1"), ("Trust_2", "site-2")):
            with contextlib.suppress(ConflictError):
                registry.add_trust(session, trust, slot)
    return {name: endpoint for name, (endpoint, _) in nets.items()}


@pytest.fixture(scope="session")
def browser() -> Iterator["Browser"]:
    """Debian's chromium (``make test`` installs it when missing): Playwright's own browser downloads cannot
    work here, and a missing browser must fail the UI tests, never skip them."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: "Browser", ui_stack: UIStack, request: pytest.FixtureRequest) -> Iterator["Page"]:
    """A fresh browser context (no cookies or local storage from other tests) on the stack's webserver. On a
    failed test, a full-page screenshot of where it stopped is kept as ``<test name>-FAILED.png``."""
    context = browser.new_context(viewport=VIEWPORT, base_url=ui_stack.url)
    context.set_default_timeout(DEFAULT_TIMEOUT * 1000)
    page = context.new_page()
    try:
        yield page
    finally:
        reports = request.node.stash.get(_REPORTS, {})
        if any(r.failed for r in reports.values()):
            try:
                path = shot(page, f"{request.node.name}-FAILED")
                print(f"\nscreenshot of the failed test's page ({page.url}): {path}")
            except Exception as exc:  # the page may be gone with the browser: the test's own error matters
                print(f"\nno failure screenshot: {exc}")
        context.close()


@pytest.fixture(scope="session")
def ui_artifacts() -> Path:
    """The folder screenshots are written to (``$FLIP_TEST_ARTIFACTS/ui`` or ``test-artifacts/ui``)."""
    return artifacts_dir()
