"""What the FL servers say about many submitted jobs at once, within a time budget.

The reconcile sensor must finish well inside Dagster's 60 s sensor timeout whatever the FL APIs do: each net is
asked once (``/list_jobs``), nets are asked side by side, every call has a short timeout, and a net that has not
answered when the budget is spent counts as UNREACHABLE for this tick.
"""

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from flip_pipelines.domain.lifecycle import Backend
from flip_pipelines.domain.retry import is_transient
from flip_pipelines.fl_api.client import FLApiClient

MAX_PARALLEL_NETS = 8


@dataclass(frozen=True)
class FLStatuses:
    jobs: dict[tuple[str, str], Backend]  # (endpoint, backend job id) → what the net says of the job
    problems: dict[str, str]  # endpoint → why it gave no answer (a refusal says so: people must fix it)


def backend_statuses(
    wanted: Iterable[tuple[str, str]], client_for: Callable[[str], FLApiClient], *, budget_seconds: float
) -> FLStatuses:
    """What each net says of its jobs: MISSING when it does not list a job, UNREACHABLE when it failed (the
    reason in ``problems``) or did not answer within ``budget_seconds``."""
    wanted = list(wanted)
    endpoints = sorted({endpoint for endpoint, _ in wanted})

    def listed(endpoint: str) -> dict[str, Backend]:
        with client_for(endpoint) as client:
            return {job.job_id: Backend.of(job.status) for job in client.list_jobs()}

    pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_NETS, max(1, len(endpoints))),
                              thread_name_prefix="flip-reconcile")
    futures = {endpoint: pool.submit(listed, endpoint) for endpoint in endpoints}
    deadline = time.monotonic() + budget_seconds
    wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
    pool.shutdown(wait=False, cancel_futures=True)  # a net still hanging is abandoned, not waited for
    answers: dict[str, dict[str, Backend]] = {}
    problems: dict[str, str] = {}
    for endpoint, future in futures.items():
        if not future.done() or future.cancelled():
            problems[endpoint] = f"no answer within the tick's {budget_seconds:g}s budget"
        elif (error := future.exception()) is not None:
            kind = "unreachable" if is_transient(error) else "refused the request"
            problems[endpoint] = f"{kind}: {error}"
        else:
            answers[endpoint] = future.result()
    jobs = {(endpoint, job_id): answers[endpoint].get(job_id, Backend.MISSING) if endpoint in answers
            else Backend.UNREACHABLE for endpoint, job_id in wanted}
    return FLStatuses(jobs, problems)
