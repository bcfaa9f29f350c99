"""Helpers for tests that drive the Dagster UI in a real browser (Debian's chromium through Playwright).

Why waits look the way they do: Dagster's pages keep polling GraphQL, so ``networkidle`` can come before (or
never) and says nothing about whether the data is drawn. Every helper here waits for something a person would
see — a text, an element — with an explicit deadline, and fails with what it was waiting for.

The stack itself (``UIStack``) is a plain ``LocalDagster`` plus the queue database and buckets it serves; the
fixtures that build it live in ``conftest.py`` beside this file.
"""

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from flip_pipelines.local.dagster import LOCATION, LocalDagster
from flip_pipelines.local.processes import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page
    from sqlmodel import Session

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1600, "height": 1000}
# long enough for a cold first render of Dagster's JS bundle on two busy cores, short enough to fail a test fast
DEFAULT_TIMEOUT = 30.0
EXE = str(Path(sys.executable).parent / "flip-pipelines")
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

# Dagster's CSS-module class names end in a build hash (``OpNode_label__iSBOV``): match the stable prefix
OP_LABEL = "[class*='OpNode_label']"
ASSET_NODE_NAME = "svg foreignObject [class*='AssetNode_assetName']"

# what Dagster's RunStatusTag writes for each run status (ui-core/src/runs/RunStatusTag.tsx)
RUN_STATUSES = ("Queued", "Not started", "Starting", "Started", "Success", "Failure", "Suspended", "Managed",
                "Canceling", "Canceled")


def artifacts_dir() -> Path:
    """Where screenshots go: ``$FLIP_TEST_ARTIFACTS/ui`` when set (CI can collect that folder), otherwise
    ``test-artifacts/ui`` in the repository (gitignored). Created on first use."""
    base = os.environ.get("FLIP_TEST_ARTIFACTS", "").strip()
    folder = (Path(base) if base else REPO / "test-artifacts") / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shot(page: "Page", name: str) -> Path:
    """A full-page PNG of what the browser shows now, kept as a test artifact; returns its path.

    ``name`` becomes the file name (characters unsafe in file names are replaced), so a test can name its steps:
    ``shot(page, "train_model-graph")``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "page"
    path = artifacts_dir() / f"{safe}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- waiting for what a person would see ---------------------------------------------------------------------


def wait_visible(target: "Locator", *, timeout: float = DEFAULT_TIMEOUT, what: str | None = None) -> "Locator":
    """Wait until ``target`` (its first match) is visible; raise ``TimeoutError`` naming ``what`` otherwise."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    first = target.first
    try:
        first.wait_for(state="visible", timeout=timeout * 1000)
    except PlaywrightTimeout as exc:
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or target} to be visible") from exc
    return first


def wait_for_text(page: "Page", text: str | re.Pattern[str], *, exact: bool = True,
                  timeout: float = DEFAULT_TIMEOUT) -> "Locator":
    """Wait until an element whose text is ``text`` (a whole-text match when ``exact``; a regex matches
    anywhere) is visible, and return it. Matches sitting in hidden elements (tooltips, closed menus) never count.
    """
    return wait_visible(page.get_by_text(text, exact=exact), timeout=timeout, what=f"the text {text!r}")


def wait_for_texts(page: "Page", texts: Sequence[str], *, exact: bool = True,
                   timeout: float = DEFAULT_TIMEOUT) -> None:
    """Every text in ``texts`` visible on the page, all within one deadline (not ``timeout`` each)."""
    deadline = time.monotonic() + timeout
    for text in texts:
        wait_for_text(page, text, exact=exact, timeout=max(1.0, deadline - time.monotonic()))


def goto(page: "Page", path: str) -> None:
    """Open ``path`` (relative to the webserver) and wait for the document only: what the test waits for next is
    the data, which arrives by polling after the load event."""
    page.goto(path, wait_until="domcontentloaded")


# --- Dagster pages ----------------------------------------------------------------------------------------------


def job_path(job: str, location: str = LOCATION) -> str:
    """``/locations/<location>/jobs/<job>``: the job's overview with its op graph (``__repository__`` is implied
    when the location holds one unnamed repository, as this project's does)."""
    return f"/locations/{location}/jobs/{job}"


def open_job(page: "Page", job: str, *, location: str = LOCATION, timeout: float = DEFAULT_TIMEOUT) -> None:
    """The job's overview page, waited on until the op graph has drawn at least one op."""
    goto(page, job_path(job, location))
    wait_visible(page.locator(OP_LABEL), timeout=timeout, what=f"the op graph of {job}")


def op_names(page: "Page") -> list[str]:
    """The op names the op graph shows now, in document order, not drawn order (a job's description may name ops
    too: only the graph's boxes count here)."""
    return [text.strip() for text in page.locator(OP_LABEL).all_inner_texts()]


def wait_for_ops(page: "Page", expected: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Wait until the op graph shows every op of ``expected``; return what it shows (the graph draws in passes)."""
    def shown() -> list[str] | None:
        names = op_names(page)
        return names if set(expected) <= set(names) else None

    return wait_until(shown, timeout=timeout, interval=0.25, what=f"the op graph to show {list(expected)}")


def open_launchpad(page: "Page", job: str, *, location: str = LOCATION, timeout: float = DEFAULT_TIMEOUT) -> None:
    """The job's Launchpad, waited on until its CodeMirror editor is live."""
    goto(page, f"{job_path(job, location)}/playground")
    wait_visible(page.locator(".CodeMirror"), timeout=timeout, what="the Launchpad's config editor")
    page.wait_for_function("() => !!document.querySelector('.CodeMirror')?.CodeMirror", timeout=timeout * 1000)


def set_launchpad_yaml(page: "Page", yaml_text: str) -> None:
    """Replace the Launchpad's config with ``yaml_text`` as a paste does: ``keyboard.type`` would auto-indent
    every new line into an invalid staircase, ``insert_text`` keeps the YAML intact."""
    page.locator(".CodeMirror").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(yaml_text)


def launchpad_yaml(page: "Page") -> str:
    """The Launchpad editor's current value, read from CodeMirror itself (the DOM only holds visible lines)."""
    return page.evaluate("() => document.querySelector('.CodeMirror').CodeMirror.getValue()")


def open_run(page: "Page", run_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """``/runs/<run id>``, waited on until the run's status is shown."""
    goto(page, f"/runs/{run_id}")
    run_status_text(page, timeout=timeout)


def run_status_text(page: "Page", *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The status the run page shows now (one of ``RUN_STATUSES``: ``Success``, ``Failure``, ``Started``...), as
    the browser renders it. To wait for one, ``wait_for_run_status(page, "Success")``."""
    return wait_visible(run_status_tag(page), timeout=timeout, what="the run's status").inner_text().strip()


def wait_for_run_status(page: "Page", *statuses: str, timeout: float = 300) -> str:
    """Wait until the open run page shows one of ``statuses`` (the page updates itself as the run moves on)."""
    unknown = set(statuses) - set(RUN_STATUSES)
    assert not unknown, f"not a status the UI shows: {unknown} (one of {RUN_STATUSES})"
    return wait_until(lambda: (shown := run_status_text(page)) in statuses and shown, timeout=timeout,
                      interval=0.5, what=f"the run page to show {' or '.join(statuses)}")


def run_status_tag(page: "Page") -> "Locator":
    """The run's status tag: the one tag whose whole text is a run status (the run page has one)."""
    pattern = re.compile(r"^\s*(" + "|".join(RUN_STATUSES) + r")\s*$")
    return page.locator(".BaseTag").filter(has_text=pattern)


def asset_path(key_path: Sequence[str]) -> str:
    """``/assets/<key path>``: each key part is one URL segment (``["flip", "model", id, "bundle"]``)."""
    return "/assets/" + "/".join(quote(part, safe="") for part in key_path)


def open_asset_lineage(page: "Page", key_path: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """The asset's Lineage tab (``?view=lineage``), waited on until the graph has drawn the asset's own node (the
    breadcrumb shows the same name at once, so only a node inside the graph counts)."""
    goto(page, f"{asset_path(key_path)}?view=lineage")
    node = page.locator(ASSET_NODE_NAME).filter(has_text=re.compile(rf"^\s*{re.escape(key_path[-1])}\s*$"))
    wait_visible(node, timeout=timeout, what=f"the lineage graph of {'/'.join(key_path)}")


def graph_asset_names(page: "Page") -> list[str]:
    """The names (last key part) of the asset nodes the lineage graph shows now."""
    return [text.strip() for text in page.locator(ASSET_NODE_NAME).all_inner_texts()]


def graph_edge_count(page: "Page") -> int:
    """How many arrows the lineage graph draws (each edge is an SVG path ending in an arrow marker)."""
    return page.locator("svg path[marker-end]").count()


# --- non-pixel assertions ---------------------------------------------------------------------------------------


class GraphQLError(AssertionError):
    """The webserver answered with ``errors``: a test asserting on ``data`` would otherwise see ``None``."""


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None, *, timeout: float = 30) -> dict:
    """POST ``query`` to ``<base_url>/graphql`` and return ``data``; raise ``GraphQLError`` on any error, so
    assertions never run on a half answer. For what needs no pixels (asset edges, run tags, statuses)."""
    response = httpx.post(f"{base_url}/graphql", json={"query": query, "variables": variables or {}},
                          timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise GraphQLError(f"GraphQL errors: {body['errors']}")
    return body["data"]


RUN_QUERY = """query($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { runId status jobName tags { key value } }
  ... on PythonError { message } ... on RunNotFoundError { message } } }"""


@dataclass
class UIStack:
    """A running Dagster (code server, daemon, webserver) serving this project's location on a queue database
    and buckets of the session's S3 server. ``env`` is what every Dagster process (and run worker) got."""

    dagster: LocalDagster
    database_url: str
    env: dict[str, str]
    buckets: dict[str, str]
    work: Path
    _engine: Any = None

    @property
    def url(self) -> str:
        return self.dagster.url

    @property
    def location(self) -> str:
        return LOCATION

    @property
    def logs(self) -> Path:
        """The code server's, daemon's and webserver's logs: the first place to look when a page stays empty."""
        return self.work / "logs"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict:
        return graphql(self.url, query, variables)

    def run(self, run_id: str) -> dict:
        """The run as GraphQL sees it: ``runId``, ``status`` (``SUCCESS``...), ``jobName``, ``tags``."""
        found = self.graphql(RUN_QUERY, {"id": run_id})["runOrError"]
        assert found["__typename"] == "Run", found
        return found

    def wait_for_run(self, run_id: str, statuses: frozenset[str] = TERMINAL_STATUSES, timeout: float = 300) -> str:
        """Poll GraphQL until the run is in one of ``statuses`` (by default, ended); return that status."""
        return wait_until(lambda: (s := self.run(run_id)["status"]) in statuses and s, timeout=timeout,
                          interval=1, what=f"run {run_id} to reach {sorted(statuses)}")

    def launch(self, job: str, run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> str:
        """Launch ``job`` through the webserver as the Launchpad does (queued, then started by the daemon); return
        the run id. A partitioned job's partition is the tag ``dagster/partition``."""
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient(self.dagster.host, port_number=self.dagster.web_port)
        return client.submit_job_execution(job, repository_location_name=LOCATION, run_config=run_config or {},
                                           tags=tags)

    def session(self) -> "Session":
        """A session on the queue database the stack serves (one engine for the stack: tests poll often)."""
        from flip_pipelines.db.engine import make_engine, new_session

        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return new_session(self._engine)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``flip-pipelines <args>`` with the stack's environment (``enqueue``, ``models upload``...)."""
        result = subprocess.run([EXE, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert not check or result.returncode == 0, result.stderr
        return result

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def new_name(prefix: str) -> str:
    """A name unique within the session (models, projects), so tests sharing the stack never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
