"""Start a claimed job's ``train_model`` run through Dagster's GraphQL API, as the queue sensor would have.

``flip-pipelines enqueue`` uses it to skip the wait for a sensor tick (up to 5–10 s: the daemon's loop period):
the run it creates carries the sensor's run config, tags and partition (``domain.runs``), so nothing downstream
can tell the two apart. Plain HTTP from the standard library, not ``dagster_graphql`` nor httpx: importing Dagster
would cost the command seconds, httpx a fifth of one (two POSTs need neither).

A launch either clearly did not happen (``LaunchError.run_may_exist`` False: Dagster unreachable, or it answered
with an error) — the caller gives the claim back and the sensor starts the job — or its outcome is unknown (the
request was sent but no answer came). Then the claim is kept: were it given back, a run Dagster did create would
train beside the sensor's. Reconciliation queues a claim again whose run never started
(``FLIP_CLAIM_GRACE_SECONDS``), so an unknown outcome delays a job but never loses or doubles it.
"""

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from flip_pipelines.domain.errors import FlipError
from flip_pipelines.domain.partitions import MODEL_PARTITIONS_NAME
from flip_pipelines.domain.queue import Claim
from flip_pipelines.domain.runs import TRAIN_MODEL_JOB, run_key, run_tags, train_model_run_config

REPOSITORY = "__repository__"  # the name Dagster gives a code location's Definitions
CONNECT_TIMEOUT_SECONDS = 2.0
ANSWER_TIMEOUT_SECONDS = 20.0

LOCATIONS = """{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name }
  jobs { name } } } ... on PythonError { message } } }"""
LAUNCH = """mutation Launch($selector: RepositorySelector!, $partitions: String!, $key: String!,
                          $params: ExecutionParams!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $partitions, partitionKey: $key) {
    __typename ... on Error { message } }
  launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message } } }"""


class LaunchError(FlipError):
    """The run was not started; ``run_may_exist`` when Dagster may have created it all the same."""

    def __init__(self, message: str, *, run_may_exist: bool) -> None:
        super().__init__(message)
        self.run_may_exist = run_may_exist


def _post(url: str, query: str, variables: dict[str, Any], *, sent_mutation: bool) -> dict[str, Any]:
    parts = urlsplit(f"{url.rstrip('/')}/graphql")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "localhost", parts.port, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        try:
            connection.connect()
        except OSError as exc:
            raise LaunchError(f"Dagster is not reachable at {url}: {exc}", run_may_exist=False) from None
        connection.sock.settimeout(ANSWER_TIMEOUT_SECONDS)
        try:  # sent, no answer: Dagster may have acted on it
            connection.request("POST", parts.path, body=json.dumps({"query": query, "variables": variables}),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            raise LaunchError(f"no answer from Dagster at {url}: {exc or type(exc).__name__}",
                              run_may_exist=sent_mutation) from None
    finally:
        connection.close()
    body: dict[str, Any] = {}
    if (response.getheader("Content-Type") or "").startswith("application/json"):
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
    if response.status != 200 or body.get("errors") or not body.get("data"):
        detail = "; ".join(e.get("message", "?") for e in body.get("errors", [])) or text[:200]
        # GraphQL refuses a bad document before running any of it; a server error mid-mutation is unknown
        raise LaunchError(f"Dagster at {url} answered {response.status}: {detail}",
                          run_may_exist=sent_mutation and response.status >= 500)
    return body["data"]


def _location(url: str) -> str:
    """The code location that has ``train_model`` (its name differs between `make dev` and a deployment)."""
    data = _post(url, LOCATIONS, {}, sent_mutation=False)["repositoriesOrError"]
    for repo in data.get("nodes", []):
        if any(job["name"] == TRAIN_MODEL_JOB for job in repo["jobs"]):
            return repo["location"]["name"]
    raise LaunchError(f"no code location at {url} has the {TRAIN_MODEL_JOB} job "
                      f"({data.get('message') or 'is it still loading?'})", run_may_exist=False)


def launch_train_model(url: str, claim: Claim, partition_key: str) -> str:
    """Create the claim's ``train_model`` run (queued in Dagster's run queue, like a sensor's); its run id.

    Raises:
        LaunchError: no run was started (see the module docstring for ``run_may_exist``).
    """
    location = _location(url)
    tags = {**run_tags(claim.net_name, claim.model_id, claim.fl_job_id, partition_key),
            "dagster/partition": partition_key, "flip/launched_by": "enqueue", "flip/run_key": run_key(claim)}
    selector = {"repositoryLocationName": location, "repositoryName": REPOSITORY}
    data = _post(url, LAUNCH, {
        "selector": selector, "partitions": MODEL_PARTITIONS_NAME, "key": partition_key,
        "params": {"selector": {**selector, "jobName": TRAIN_MODEL_JOB},
                   "runConfigData": train_model_run_config(claim),
                   "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}},
    }, sent_mutation=True)
    launched = data["launchRun"]
    if launched["__typename"] == "LaunchRunSuccess":
        return str(launched["run"]["runId"])
    detail = launched.get("message") or "; ".join(e["message"] for e in launched.get("errors", []))
    raise LaunchError(f"Dagster refused the run ({launched['__typename']}): {detail}", run_may_exist=False)
