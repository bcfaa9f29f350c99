"""Load on the queue: a bulk queue builder, concurrent claimers in separate processes, and a checker for what
they recorded (each job claimed once, never two jobs on one net at a time). The claim benchmark and the
concurrency proof both stand on it."""

import multiprocessing
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLJobTrust, FLScheduler, Model, utcnow
from flip_pipelines.domain.enums import FLBackend, JobStatus
from flip_pipelines.domain.lifecycle import Outcome

BENCH_MODEL = "bench-model"


def suits_every_backend(url: str) -> dict[uuid.UUID, frozenset[FLBackend]]:
    """The seeded model's fit, as a claimer passes it: every backend (the proof is about rows, not files)."""
    engine = make_engine(url)
    try:
        with new_session(engine) as session:
            model_id = session.exec(select(Model.id).where(Model.name == BENCH_MODEL)).one()
        return {model_id: frozenset(FLBackend)}
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Hold:
    """One claim as a worker saw it: a window inside the real time the net held the job."""

    fl_job_id: str
    net_id: str
    claimed_ns: int
    released_ns: int
    worker: int
    slot_job_seen: str | None  # the job the net's slot named while we held it: must be ours


def seed_queue(url: str, *, jobs: int, nets: int, trusts: int = 2) -> list[uuid.UUID]:
    """A project, trusts, ``nets`` nets and ``jobs`` queued jobs (bulk-inserted, strictly increasing ``created``)."""
    engine = make_engine(url)
    try:
        with new_session(engine) as session:
            registry.add_project(session, "bench", "SELECT 1")
            trust_ids = [registry.add_trust(session, f"Trust_{i}", f"site-{i}").id for i in range(1, trusts + 1)]
            for i in range(1, nets + 1):
                registry.add_net(session, f"net-{i:03d}", f"http://127.0.0.1:{20000 + i}", FLBackend.NVFLARE)
            model = registry.add_model(session, BENCH_MODEL, "bench")
            base = utcnow()
            job_rows = [FLJob(model_id=model.id, created=base + timedelta(microseconds=i)) for i in range(jobs)]
            session.add_all(job_rows)
            session.flush()
            session.add_all([FLJobTrust(fl_job_id=j.id, trust_id=t) for j in job_rows for t in trust_ids])
            session.commit()
            return [j.id for j in job_rows]
    finally:
        engine.dispose()


def _claim_and_complete(args: tuple[str, int, bool, float, float, Any]) -> list[Hold]:
    url, worker, lock_rows, deadline_s, pause_s, start_together = args
    engine = make_engine(url)
    holds: list[Hold] = []
    backends_of = suits_every_backend(url)
    start_together.wait(timeout=deadline_s)
    deadline = time.monotonic() + deadline_s
    try:
        with new_session(engine) as session:
            while time.monotonic() < deadline:
                claim = claims.claim_next_job(session, backends_of, lock_rows=lock_rows)
                if claim is None:
                    remaining = session.exec(
                        select(sa.func.count()).select_from(FLJob).where(FLJob.status == JobStatus.QUEUED)
                    ).one()
                    if remaining == 0:
                        break
                    time.sleep(0.001)  # every net is busy with another worker: back off, then retry
                    continue
                claimed = time.monotonic_ns()
                slot_job = session.exec(
                    select(FLScheduler.job_id).where(FLScheduler.id == claim.scheduler_id)
                ).one()
                session.commit()
                released = time.monotonic_ns()
                try:
                    lifecycle.end_training(session, claim.fl_job_id, Outcome.FINISHED, "load test")
                except Exception:  # a broken claim can hand one job out twice; record it all the same
                    session.rollback()
                holds.append(
                    Hold(str(claim.fl_job_id), str(claim.net_id), claimed, released, worker, str(slot_job))
                )
                time.sleep(pause_s)  # a sensor tick's gap: SQLite's busy waiters get the write lock in between
    finally:
        engine.dispose()
    return holds


def run_claimers(
    url: str, *, processes: int, lock_rows: bool = True, deadline_s: float = 300.0, pause_s: float = 0.0
) -> list[Hold]:
    """``processes`` workers claim-and-complete until the queue is empty; returns every hold they recorded.

    The workers wait at a barrier once they are up (imports, engine, model lookup), so a worker that started
    first cannot drain a small queue before the others exist and the proof really is about concurrent claims.
    """
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        start_together = manager.Barrier(processes)
        work = [(url, w, lock_rows, deadline_s, pause_s, start_together) for w in range(processes)]
        results = pool.map(_claim_and_complete, work)
    return [hold for worker_holds in results for hold in worker_holds]


def violations(holds: list[Hold], expected_job_ids: set[str]) -> list[str]:
    """Every way the recorded history breaks 'each job claimed exactly once, one job per net at a time'."""
    problems: list[str] = []
    claims_per_job: dict[str, int] = {}
    for hold in holds:
        claims_per_job[hold.fl_job_id] = claims_per_job.get(hold.fl_job_id, 0) + 1
    problems += [f"job {j} claimed {n} times" for j, n in claims_per_job.items() if n > 1]
    problems += [f"job {j} never claimed" for j in sorted(expected_job_ids - claims_per_job.keys())]
    problems += [
        f"net {h.net_id} named job {h.slot_job_seen} while {h.fl_job_id} held it"
        for h in holds
        if h.slot_job_seen != h.fl_job_id
    ]
    by_net: dict[str, list[Hold]] = {}
    for hold in holds:
        by_net.setdefault(hold.net_id, []).append(hold)
    for net, net_holds in by_net.items():
        net_holds.sort(key=lambda h: h.claimed_ns)
        for before, after in zip(net_holds, net_holds[1:], strict=False):
            if after.claimed_ns < before.released_ns:
                problems.append(f"net {net} held jobs {before.fl_job_id} and {after.fl_job_id} at once")
    return problems


def final_statuses(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with new_session(engine) as session:
            rows = session.exec(select(FLJob.status, sa.func.count()).group_by(FLJob.status)).all()
            model_count = session.exec(select(sa.func.count()).select_from(Model)).one()
            assert model_count == 1
        return {status.value: count for status, count in rows}
    finally:
        engine.dispose()
