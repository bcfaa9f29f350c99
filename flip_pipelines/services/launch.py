"""Start a claimed job's ``train_model`` run through Dagster's GraphQL API, as the queue sensor would have.

``flip-pipelines enqueue`` uses it to skip the wait for a sensor tick (up to 5–10 s: the daemon's loop period):
the run it creates carries the sensor's run config, tags and partition (``domain.runs``), so nothing downstream
can tell the two apart. Plain HTTP (httpx), not ``dagster_graphql``: importing Dagster would cost the command
seconds.

A launch either clearly did not happen (``LaunchError.run_may_exist`` False: Dagster unreachable, or it answered
with an error) — the caller gives the claim back and the sensor starts the job — or its outcome is unknown (the
request was sent but no answer came). Then the claim is kept: were it given back, a run Dagster did create would
train beside the sensor's. Reconciliation queues a claim again whose run never started
(``FLIP_CLAIM_GRACE_SECONDS``), so an unknown outcome delays a job but never loses or doubles it.
"""

from typing import Any

import httpx

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


def _post(client: httpx.Client, url: str, query: str, variables: dict[str, Any], *, sent_mutation: bool
          ) -> dict[str, Any]:
    try:
        response = client.post(f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables})
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise LaunchError(f"Dagster is not reachable at {url}: {exc}", run_may_exist=False) from None
    except httpx.HTTPError as exc:  # sent, no answer: Dagster may have acted on it
        raise LaunchError(f"no answer from Dagster at {url}: {exc}", run_may_exist=sent_mutation) from None
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200 or body.get("errors") or not body.get("data"):
        detail = "; ".join(e.get("message", "?") for e in body.get("errors", [])) or response.text[:200]
        # GraphQL refuses a bad document before running any of it; a server error mid-mutation is unknown
        raise LaunchError(f"Dagster at {url} answered {response.status_code}: {detail}",
                          run_may_exist=sent_mutation and response.status_code >= 500)
    return body["data"]


def _location(client: httpx.Client, url: str) -> str:
    """The code location that has ``train_model`` (its name differs between `make dev` and a deployment)."""
    data = _post(client, url, LOCATIONS, {}, sent_mutation=False)["repositoriesOrError"]
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
    timeout = httpx.Timeout(ANSWER_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    with httpx.Client(timeout=timeout) as client:
        location = _location(client, url)
        tags = {**run_tags(claim.net_name, claim.model_id, claim.fl_job_id, partition_key),
                "dagster/partition": partition_key, "flip/launched_by": "enqueue", "flip/run_key": run_key(claim)}
        selector = {"repositoryLocationName": location, "repositoryName": REPOSITORY}
        data = _post(client, url, LAUNCH, {
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
