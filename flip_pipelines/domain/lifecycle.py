"""What a training's lifecycle does next, decided without I/O.

The database transitions (``db.lifecycle``, ``db.claims``) carry out these decisions; the ops and sensors gather
the facts (job row, run records, the FL server's answer) and ask here what to do. Each rule is a plain function
over plain values, so every combination is covered by a table test.
"""

from dataclasses import dataclass
from enum import StrEnum

from flip_pipelines.domain.enums import FLJobStatus, JobStatus, ModelStatus


class Outcome(StrEnum):
    """How a claimed training ended."""

    FINISHED = "FINISHED"  # the FL job finished and its result is stored
    FAILED = "FAILED"  # the FL job failed, vanished, or could not be followed to its end
    STOPPED = "STOPPED"  # the FL job was stopped by something other than the hub (FLIP treats this as an error)
    ABORTED = "ABORTED"  # the hub was asked to stop the training


@dataclass(frozen=True)
class FinalState:
    job: JobStatus
    model: ModelStatus


FINAL_STATES: dict[Outcome, FinalState] = {
    Outcome.FINISHED: FinalState(JobStatus.COMPLETED, ModelStatus.RESULTS_UPLOADED),
    Outcome.FAILED: FinalState(JobStatus.COMPLETED, ModelStatus.ERROR),
    Outcome.STOPPED: FinalState(JobStatus.COMPLETED, ModelStatus.ERROR),
    Outcome.ABORTED: FinalState(JobStatus.DELETED, ModelStatus.STOPPED),
}


def outcome_of_backend_status(status: FLJobStatus | None) -> Outcome | None:
    """The outcome a backend status means, or None while the FL job is still pending or running.

    ``None`` (the FL server no longer lists the job) is a failure: the job vanished (FLIP #1001).
    """
    if status is None:
        return Outcome.FAILED
    return {
        FLJobStatus.FINISHED: Outcome.FINISHED,
        FLJobStatus.FAILED: Outcome.FAILED,
        FLJobStatus.STOPPED: Outcome.STOPPED,
    }.get(status)


class RunState(StrEnum):
    """The Dagster runs of a claimed job, as the reconcile sensor sees them."""

    ALIVE = "ALIVE"  # a run is queued, starting, or started with a fresh heartbeat
    LOST = "LOST"  # a run is started, but its heartbeat stopped: its worker died (the sensor marks it failed)
    ENDED_LOST = "ENDED_LOST"  # the latest run was marked failed because its worker died
    ENDED = "ENDED"  # the latest run ended on its own (failed, succeeded or was canceled)
    NONE = "NONE"  # no run was ever started for the job


class RunPhase(StrEnum):
    """A Dagster run's status, reduced to what recovery needs."""

    WAITING = "WAITING"  # queued, not started, starting: no worker to lose yet
    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@dataclass(frozen=True)
class RunFact:
    phase: RunPhase
    silent_seconds: float  # since its last heartbeat (since it started, before its first)
    failure_reason: str | None = None  # Dagster's ``dagster/failure_reason`` of a failed run
    marked_lost: bool = False  # reconciliation marked it failed because its worker went silent


@dataclass(frozen=True)
class RunsSeen:
    state: RunState
    lost: tuple[int, ...]  # indexes of started runs whose heartbeat stopped: to be marked failed
    failed: int  # runs that failed or lost their worker (those included)


def classify_runs(runs: "list[RunFact]", stale_seconds: float) -> RunsSeen:
    """The runs of one claimed job (newest first) as reconciliation sees them: a started run silent for longer
    than ``stale_seconds`` lost its worker; the state is ALIVE while any other run is waiting or started, else
    what the newest run's end says."""
    lost = tuple(i for i, r in enumerate(runs) if r.phase == RunPhase.STARTED and r.silent_seconds > stale_seconds)
    active = [i for i, r in enumerate(runs) if r.phase in (RunPhase.WAITING, RunPhase.STARTED)]
    failed = sum(1 for r in runs if r.phase == RunPhase.FAILED) + len(lost)
    if len(active) > len(lost):
        state = RunState.ALIVE
    elif lost:
        state = RunState.LOST
    elif not runs:
        state = RunState.NONE
    else:
        newest = runs[0]
        died = newest.phase == RunPhase.FAILED and worker_was_lost(newest.failure_reason, newest.marked_lost)
        state = RunState.ENDED_LOST if died else RunState.ENDED
    return RunsSeen(state, lost, failed)


class Backend(StrEnum):
    """What the net's FL API said about a submitted job (``NOT_ASKED`` when it was not needed or not submitted)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    MISSING = "MISSING"
    UNKNOWN = "UNKNOWN"  # listed, with a status its FL API could not map (FLIP's FL APIs)
    UNREACHABLE = "UNREACHABLE"
    NOT_ASKED = "NOT_ASKED"

    @classmethod
    def of(cls, status: FLJobStatus | None) -> "Backend":
        return cls.MISSING if status is None else cls(status.value)


class Action(StrEnum):
    LEAVE = "LEAVE"  # a run follows the job, or it is too early to tell
    REQUEUE = "REQUEUE"  # no run ever started for the claim: back to the queue in its old place
    RESTART = "RESTART"  # start train_model again for the claimed job (the submit token makes this safe)
    FAIL = "FAIL"  # its run ended before submitting: the training failed before submission
    RESUME = "RESUME"  # start resume_training: follow the submitted FL job to its end
    END = "END"  # end the training with the FL job's outcome (failed, stopped outside the hub, vanished)
    GIVE_UP = "GIVE_UP"  # too many failed runs, or no net holds the job: end it (aborting its FL job)
    WAIT = "WAIT"  # the FL API did not answer: ask again next tick


MAX_RUN_ATTEMPTS = 3


@dataclass(frozen=True)
class ReconcileFacts:
    submitted: bool  # the FL server accepted the job (the hub recorded its backend id)
    holds_net: bool  # a net's slot still names the job
    run: RunState
    backend: Backend  # NOT_ASKED unless ``backend_needed``
    past_grace: bool  # the claim is older than the time the daemon needs to start its run
    failed_runs: int  # runs of this job that failed or lost their worker (a lost one included)


def backend_needed(submitted: bool, holds_net: bool, run: RunState) -> bool:
    """Whether the reconcile sensor must ask the FL API about a job before deciding (saves calls per tick)."""
    return submitted and holds_net and run != RunState.ALIVE


def reconcile_action(facts: ReconcileFacts) -> Action:
    """What the reconcile sensor does with one IN_PROGRESS job.

    A live run is left alone. A job nobody follows is restarted on its net when its run's worker died before
    the hub recorded a submission (a second submission with the same token returns the first FL job), failed
    when its run ended on its own before submitting, queued again when no run ever started for it, resumed when
    its FL job is still going or finished, and ended when its FL job failed, was stopped outside the hub or
    vanished. After ``MAX_RUN_ATTEMPTS`` failed runs, or once no net holds it, the hub gives up on it.
    """
    if facts.run == RunState.ALIVE:
        return Action.LEAVE
    if facts.failed_runs >= MAX_RUN_ATTEMPTS or not facts.holds_net:
        return Action.GIVE_UP
    if not facts.submitted:
        if facts.run in (RunState.LOST, RunState.ENDED_LOST):
            return Action.RESTART
        if facts.run == RunState.ENDED:
            return Action.FAIL
        return Action.REQUEUE if facts.past_grace else Action.LEAVE
    if facts.backend in (Backend.PENDING, Backend.RUNNING, Backend.FINISHED):
        return Action.RESUME
    if facts.backend in (Backend.FAILED, Backend.STOPPED, Backend.MISSING):
        return Action.END
    return Action.WAIT  # unreachable, or a status nobody can read yet (UNKNOWN)


# Dagster's ``dagster/failure_reason`` values of a run that failed in a step or before any step could run; a failed
# run without one of these (a killed process, a lost host, a restarted worker) lost its worker instead.
FAILED_ON_ITS_OWN = frozenset({"STEP_FAILURE", "JOB_INITIALIZATION_FAILURE", "RUN_EXCEPTION"})


def worker_was_lost(failure_reason: str | None, marked_lost: bool) -> bool:
    """Whether a failed run died with its worker (SIGKILL, OOM, host gone) rather than failing on its own: the
    code server reports a killed worker's run failed with no reason, and reconciliation marks a run whose
    heartbeat stopped."""
    return marked_lost or failure_reason not in FAILED_ON_ITS_OWN


class AfterFailure(StrEnum):
    NOTHING = "NOTHING"
    FAIL_BEFORE_SUBMISSION = "FAIL_BEFORE_SUBMISSION"


def after_run_failure(job: JobStatus, submitted: bool, worker_lost: bool) -> AfterFailure:
    """What the failure sensor does when a train_model run failed.

    Only a run that failed on its own before submitting ends the training here. A run whose worker was lost is
    restarted by reconciliation; a submitted job is followed by reconciliation (its FL job may still be
    training); a job no longer IN_PROGRESS was already ended by whoever moved it.
    """
    if job != JobStatus.IN_PROGRESS or submitted or worker_lost:
        return AfterFailure.NOTHING
    return AfterFailure.FAIL_BEFORE_SUBMISSION
