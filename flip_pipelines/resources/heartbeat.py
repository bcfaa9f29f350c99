"""The run's heartbeat: a tag renewed from a background thread for as long as the run worker lives.

Dagster's default run launcher cannot tell that a run worker died, so its run would stay STARTED forever. The
reconcile sensor reads this tag instead: a STARTED run whose heartbeat is older than
``FLIP_MONITOR_STALE_SECONDS`` lost its worker. A thread keeps beating while an op blocks (a long upload, a slow
bundle), so only a dead process goes quiet.
"""

import contextlib
import threading
import time

import dagster as dg
from pydantic import PrivateAttr

from flip_pipelines import settings

HEARTBEAT_TAG = "flip/heartbeat"


def heartbeat_age(tags: dict[str, str], started: float | None, now: float) -> float:
    """Seconds since a run last beat (since it started, before its first beat)."""
    beat = tags.get(HEARTBEAT_TAG)
    return now - (float(beat) if beat else (started or now))


class RunHeartbeat(dg.ConfigurableResource):
    """Renews ``flip/heartbeat`` on the run every few seconds from setup to teardown."""

    _stop: threading.Event = PrivateAttr(default_factory=threading.Event)
    _thread: threading.Thread | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        instance, run = context.instance, context.run
        if instance is None or run is None:
            return
        run_id = run.run_id
        interval = settings.heartbeat_seconds()

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception):  # the storage blinked: the next beat tries again
                    instance.add_run_tags(run_id, {HEARTBEAT_TAG: str(int(time.time()))})
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=beat, name="flip-heartbeat", daemon=True)
        self._thread.start()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
