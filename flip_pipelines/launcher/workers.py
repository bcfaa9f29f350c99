"""A process of the launcher — a run worker or the template — identified by its PID and its start time, so a
recycled PID is never taken for it.

The launcher records both of a run worker on its run (tags), and any process on the host — the daemon's run
monitoring, the webserver terminating a run — can tell whether the run's worker still lives without being its
parent.
"""

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from flip_pipelines.local.processes import proc_stat

PID_TAG = "flip/run_worker_pid"
STARTED_TAG = "flip/run_worker_started"  # clock ticks after boot (/proc/<pid>/stat field 22)


def start_ticks(pid: int) -> str:
    """When ``pid`` started, in clock ticks after boot ("" off Linux or when it is already gone)."""
    fields = proc_stat(pid)
    return fields[19] if fields else ""


@dataclass(frozen=True)
class HostProcess:
    pid: int
    started: str = ""

    @classmethod
    def of(cls, pid: int) -> Self:
        return cls(pid, start_ticks(pid))

    def alive(self) -> bool:
        """Running (not a zombie) and the very process that was started, not a later one given its PID."""
        fields = proc_stat(self.pid)
        if fields is None:
            return False
        if fields[0] in ("Z", "X"):
            return False
        return not self.started or fields[19] == self.started

    def signal(self, signum: signal.Signals) -> bool:
        """Send ``signum`` if the process still lives; whether it was sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True


class RunWorker(HostProcess):
    """The process that executes one run, as tagged on the run."""

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "RunWorker | None":
        pid = tags.get(PID_TAG, "")
        return cls(int(pid), tags.get(STARTED_TAG, "")) if pid.isdigit() else None

    def tags(self) -> dict[str, str]:
        return {PID_TAG: str(self.pid), STARTED_TAG: self.started}
