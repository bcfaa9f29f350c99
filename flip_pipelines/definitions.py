"""The code location: every job, sensor and resource of flip_pipelines, assembled in one place."""

import dagster as dg

from flip_pipelines.jobs.maintenance import queue_watchdog
from flip_pipelines.resources.database import QueueDatabase


def build_resources() -> dict[str, object]:
    """Resources by environment; secrets and URLs are resolved at run time, never shown in the Launchpad."""
    return {"queue_db": QueueDatabase()}


defs = dg.Definitions(
    jobs=[queue_watchdog],
    resources=build_resources(),
)
