"""The lifecycle's decisions as decision tables, checked against every combination of their inputs."""

import itertools

import pytest

from flip_pipelines.domain.enums import FLJobStatus, JobStatus, ModelStatus
from flip_pipelines.domain.lifecycle import (
    FINAL_STATES,
    MAX_RUN_ATTEMPTS,
    Action,
    AfterFailure,
    Backend,
    Outcome,
    ReconcileFacts,
    RunFact,
    RunPhase,
    RunState,
    after_run_failure,
    backend_needed,
    classify_runs,
    outcome_of_backend_status,
    reconcile_action,
    worker_was_lost,
)

ANY = object()
R, B = RunState, Backend

# (submitted, holds_net, run, backend, past_grace, failed_runs >= MAX) → action; first matching row wins.
RECONCILE_TABLE = [
    (ANY, ANY, {R.ALIVE}, ANY, ANY, ANY, Action.LEAVE),
    (ANY, False, ANY, ANY, ANY, ANY, Action.GIVE_UP),
    (ANY, ANY, ANY, ANY, ANY, True, Action.GIVE_UP),
    (False, True, {R.LOST, R.ENDED_LOST}, ANY, ANY, False, Action.RESTART),
    (False, True, {R.ENDED}, ANY, ANY, False, Action.FAIL),
    (False, True, {R.NONE}, ANY, True, False, Action.REQUEUE),
    (False, True, {R.NONE}, ANY, False, False, Action.LEAVE),
    (True, True, ANY, {B.PENDING, B.RUNNING, B.FINISHED}, ANY, False, Action.RESUME),
    (True, True, ANY, {B.FAILED, B.STOPPED, B.MISSING}, ANY, False, Action.END),
    (True, True, ANY, {B.UNREACHABLE, B.UNKNOWN, B.NOT_ASKED}, ANY, False, Action.WAIT),
]


def _matches(cell: object, value: object) -> bool:
    return cell is ANY or (value in cell if isinstance(cell, set) else cell == value)


def test_reconcile_action_follows_the_table_for_every_combination() -> None:
    used = set()
    combinations = itertools.product([False, True], [False, True], RunState, Backend, [False, True],
                                      [0, MAX_RUN_ATTEMPTS - 1, MAX_RUN_ATTEMPTS])
    for submitted, holds_net, run, backend, past_grace, failed in combinations:
        inputs = (submitted, holds_net, run, backend, past_grace, failed >= MAX_RUN_ATTEMPTS)
        row = next(i for i, r in enumerate(RECONCILE_TABLE) if all(map(_matches, r[:6], inputs)))
        used.add(row)
        facts = ReconcileFacts(submitted, holds_net, run, backend, past_grace, failed)
        assert reconcile_action(facts) == RECONCILE_TABLE[row][6], facts
    assert used == set(range(len(RECONCILE_TABLE))), "every row of the table decides some combination"


def test_the_fl_api_is_asked_only_about_submitted_jobs_nobody_follows() -> None:
    for submitted, holds_net, run in itertools.product([False, True], [False, True], RunState):
        expected = submitted and holds_net and run != RunState.ALIVE
        assert backend_needed(submitted, holds_net, run) is expected


@pytest.mark.parametrize(("job", "submitted", "lost", "expected"), [
    (job, submitted, lost,
     AfterFailure.FAIL_BEFORE_SUBMISSION if (job, submitted, lost) == (JobStatus.IN_PROGRESS, False, False)
     else AfterFailure.NOTHING)
    for job, submitted, lost in itertools.product(JobStatus, [False, True], [False, True])
])
def test_the_failure_sensor_only_fails_unsubmitted_jobs_whose_run_failed_on_its_own(
    job: JobStatus, submitted: bool, lost: bool, expected: AfterFailure
) -> None:
    assert after_run_failure(job, submitted, lost) == expected


@pytest.mark.parametrize(("status", "outcome"), [
    (FLJobStatus.PENDING, None), (FLJobStatus.RUNNING, None), (FLJobStatus.FINISHED, Outcome.FINISHED),
    (FLJobStatus.FAILED, Outcome.FAILED), (FLJobStatus.STOPPED, Outcome.STOPPED), (None, Outcome.FAILED),
])
def test_backend_status_to_outcome(status: FLJobStatus | None, outcome: Outcome | None) -> None:
    assert outcome_of_backend_status(status) == outcome


def test_every_outcome_has_its_final_states() -> None:
    assert {o: (s.job, s.model) for o, s in FINAL_STATES.items()} == {
        Outcome.FINISHED: (JobStatus.COMPLETED, ModelStatus.RESULTS_UPLOADED),
        Outcome.FAILED: (JobStatus.COMPLETED, ModelStatus.ERROR),
        Outcome.STOPPED: (JobStatus.COMPLETED, ModelStatus.ERROR),
        Outcome.ABORTED: (JobStatus.DELETED, ModelStatus.STOPPED),
    }


@pytest.mark.parametrize(("reason", "marked", "lost"), [
    ("STEP_FAILURE", False, False), ("JOB_INITIALIZATION_FAILURE", False, False), ("RUN_EXCEPTION", False, False),
    (None, False, True), ("UNEXPECTED_TERMINATION", False, True), ("RUN_WORKER_RESTART", False, True),
    ("START_TIMEOUT", False, True), ("STEP_FAILURE", True, True),
])
def test_a_run_that_did_not_fail_on_its_own_lost_its_worker(reason: str | None, marked: bool, lost: bool) -> None:
    assert worker_was_lost(reason, marked) is lost


P = RunPhase
STALE = 10.0


@pytest.mark.parametrize(("runs", "state", "lost", "failed"), [
    ([], RunState.NONE, (), 0),
    ([RunFact(P.WAITING, 99)], RunState.ALIVE, (), 0),
    ([RunFact(P.STARTED, 3)], RunState.ALIVE, (), 0),
    ([RunFact(P.STARTED, 11)], RunState.LOST, (0,), 1),
    ([RunFact(P.STARTED, 11), RunFact(P.WAITING, 0)], RunState.ALIVE, (0,), 1),
    ([RunFact(P.FAILED, 50, "STEP_FAILURE")], RunState.ENDED, (), 1),
    ([RunFact(P.FAILED, 50, None)], RunState.ENDED_LOST, (), 1),
    ([RunFact(P.FAILED, 50, "STEP_FAILURE", marked_lost=True)], RunState.ENDED_LOST, (), 1),
    ([RunFact(P.SUCCEEDED, 50), RunFact(P.FAILED, 90, None)], RunState.ENDED, (), 1),
    ([RunFact(P.CANCELED, 50)], RunState.ENDED, (), 0),
    ([RunFact(P.FAILED, 5, None), RunFact(P.FAILED, 50, None), RunFact(P.STARTED, 20)], RunState.LOST, (2,), 3),
])
def test_runs_of_a_job_from_their_phases_and_heartbeats(runs: list[RunFact], state: RunState, lost: tuple[int, ...],
                                                        failed: int) -> None:
    seen = classify_runs(runs, STALE)
    assert (seen.state, seen.lost, seen.failed) == (state, lost, failed)
