"""Start, wait for and stop local server processes by PID."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], T | None], *, timeout: float, interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value, or raise ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the server is still coming up: keep polling until the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{suffix}")
        time.sleep(interval)


def _reset_signals() -> None:
    """Children of non-interactive shells inherit SIGINT ignored; servers must be stoppable with it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_process(
    args: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (so its whole process group can be stopped), logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115  (owned by the child from here on)
    try:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            user=user,
            start_new_session=True,
            preexec_fn=_reset_signals,
        )
    finally:
        log.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0): reap it if it is ours
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    return (fields := proc_stat(pid)) is not None and fields[0] != "Z"


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses): [0] is the
    state, [1] the parent, [19] the start time in clock ticks after boot; None once ``pid`` is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def stop_pid(pid: int, *, first_signal: int = signal.SIGTERM, timeout: float = 15.0, group: bool = True) -> None:
    """Stop a process (and its process group when it leads one): ``first_signal``, then SIGKILL at the deadline."""

    def send(sig: int) -> None:
        try:
            if group and os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    if not pid_alive(pid):
        return
    send(first_signal)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    send(signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout=10, what=f"pid {pid} to exit after SIGKILL")


def write_pids(path: Path, pids: dict[str, int]) -> None:
    path.write_text(json.dumps(pids, indent=2))


def read_pids(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    return {k: int(v) for k, v in json.loads(path.read_text()).items()}


def parent_pid(pid: int) -> int:
    """The parent of ``pid`` (from /proc); 0 once ``pid`` is gone."""
    fields = proc_stat(pid)
    return int(fields[1]) if fields else 0


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (read from /proc), deepest first.

    Needed because some servers (NVFlare's job workers) start children in their own sessions, out of reach of
    the parent's process group.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (parent := parent_pid(int(entry))):
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found[::-1]


def processes_running(module: str, environment: dict[str, str]) -> list[int]:
    """Live processes started as ``python -m module`` (and processes forked from them) whose environment holds
    ``environment``: how processes that left their parent's tree are found again."""
    wanted = {f"{k}={v}".encode() for k, v in environment.items()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if module.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0"):
                continue
            if not wanted <= set(Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")):
                continue
        except OSError:  # gone, or another user's
            continue
        if _not_zombie(int(entry)):
            found.append(int(entry))
    return found


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to a process, its descendants (whatever session they are in) and their process groups."""
    for target in [*descendants(pid), pid]:
        for send in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(target, sig)
