"""Crash points for the crash drills: a real SIGKILL of the real process at a named boundary of a training.

Disarmed unless ``FLIP_CRASH_POINTS_FILE`` names a file. Each line of that file, ``<point> <key>``, arms one
crash point for one training (the key is the model id). The line is removed before the process kills itself,
so the run that recovers the training passes the same point, and ``<point> <key> <unix time>`` is appended to
``<file>.fired`` so a drill knows when it happened. Nothing in production sets the variable.
"""

import fcntl
import os
import signal
import time
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


def crash_point(name: str, key: str) -> None:
    """SIGKILL this process if ``name`` is armed for ``key`` (disarming it first)."""
    path = os.environ.get(CRASH_POINTS_ENV)
    if not path or not Path(path).exists():
        return
    entry = f"{name} {key}"
    with open(path, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        armed = [line for line in handle.read().splitlines() if line.strip()]
        if entry not in armed:
            return
        armed.remove(entry)
        handle.seek(0)
        handle.truncate()
        handle.write("".join(f"{line}\n" for line in armed))
        handle.flush()
        os.fsync(handle.fileno())
        with open(f"{path}.fired", "a") as fired:
            fired.write(f"{entry} {time.time()}\n")
            fired.flush()
            os.fsync(fired.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def arm(path: Path, name: str, key: str) -> None:
    """Arm crash point ``name`` for ``key`` in ``path`` (the file ``FLIP_CRASH_POINTS_FILE`` names).

    Raises:
        ValueError: unknown crash point.
    """
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}: expected one of {', '.join(CRASH_POINTS)}")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(f"{name} {key}\n")


def fired_at(path: Path, name: str, key: str) -> float | None:
    """When crash point ``name`` fired for ``key`` (unix time), or None if it has not."""
    fired = Path(f"{path}.fired")
    if not fired.exists():
        return None
    for line in fired.read_text().splitlines():
        point, armed_key, when = line.split()
        if (point, armed_key) == (name, key):
            return float(when)
    return None
