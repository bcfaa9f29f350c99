"""Concurrent claimers in separate processes: each job exactly once, never two jobs on one net at a time."""

import pytest

from flip_pipelines.local.queue_load import final_statuses, run_claimers, seed_queue, violations
from flip_pipelines_tests.conftest import fresh_database_url

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("kind", "processes", "jobs", "nets", "pause_s"),
    # SQLite hands its one write lock to whoever asks again first: without a pause between claims one worker
    # can take the whole queue while the others sleep in the busy handler.
    [("postgres", 8, 2000, 10, 0.0), ("sqlite", 4, 200, 10, 0.005)],
)
def test_concurrent_claims_take_every_job_once(
    kind: str, processes: int, jobs: int, nets: int, pause_s: float, request: pytest.FixtureRequest, tmp_path
) -> None:
    url = fresh_database_url(kind, request, tmp_path)
    job_ids = {str(j) for j in seed_queue(url, jobs=jobs, nets=nets)}
    holds = run_claimers(url, processes=processes, pause_s=pause_s)
    assert violations(holds, job_ids) == []
    assert len(holds) == jobs
    assert len({h.worker for h in holds}) > 1, "the claims really were spread over several processes"
    assert final_statuses(url) == {"COMPLETED": jobs}


def test_claim_without_row_locks_is_caught(request: pytest.FixtureRequest, tmp_path) -> None:
    """The checker above can fail: the same claim without FOR UPDATE SKIP LOCKED double-books on PostgreSQL."""
    url = fresh_database_url("postgres", request, tmp_path)
    job_ids = {str(j) for j in seed_queue(url, jobs=400, nets=10)}
    holds = run_claimers(url, processes=8, lock_rows=False)
    assert violations(holds, job_ids), "claims without row locks should have collided"
