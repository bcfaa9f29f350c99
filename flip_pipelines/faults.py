"""Crash points for the crash drills: a real SIGKILL of the real process at a named boundary of a training.

Disarmed unless ``FLIP_CRASH_POINTS_FILE`` names a file; each line of that file arms one crash point. The line is
removed before the process kills itself, so the run that recovers the training passes the same point. Nothing
in production sets the variable; ``benchmarks/drills.py`` and the drill tests do.
"""

import fcntl
import os
import signal
from pathlib import Path

CRASH_POINTS_ENV = "FLIP_CRASH_POINTS_FILE"

# The boundaries of a training the drills crash at, in the order a run meets them.
CRASH_POINTS = (
    "after_claim",  # resolve_backend holds the claim; nothing bundled
    "mid_bundle",  # the bundle prefix was emptied, copies are under way
    "after_upload",  # the FL API has the application; nothing submitted
    "after_submit",  # the FL server accepted the job; the hub has not recorded it
    "mid_monitor",  # the FL job is running and being followed
    "after_finished",  # the FL job finished; its result is not stored yet
)


def crash_point(name: str) -> None:
    """SIGKILL this process if ``name`` is armed (and disarm it first)."""
    path = os.environ.get(CRASH_POINTS_ENV)
    if not path or not Path(path).exists():
        return
    with open(path, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        armed = handle.read().split()
        if name not in armed:
            return
        armed.remove(name)
        handle.seek(0)
        handle.truncate()
        handle.write("\n".join(armed))
        handle.flush()
        os.fsync(handle.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def arm(path: Path, name: str) -> None:
    """Arm crash point ``name`` in the file ``FLIP_CRASH_POINTS_FILE`` names."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}: expected one of {', '.join(CRASH_POINTS)}")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(f"\n{name}")
