"""Process-wide settings read from the environment, with embedded local defaults."""

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flip_pipelines.domain.alert_outbox import RetrySchedule
    from flip_pipelines.domain.net_options import NetOptions

DATA_DIR_ENV = "FLIP_DATA_DIR"
DATABASE_URL_ENV = "FLIP_DATABASE_URL"
LOCAL_STACK_PID_ENV = "FLIP_LOCAL_STACK_PID"


def data_dir() -> Path:
    """The local data folder (embedded SQLite database, Dagster home, local S3 data).

    ``FLIP_DATA_DIR`` overrides the default ``./.flip`` (relative to the working directory); set empty, as the deploy
    files leave unset settings, it is the default too rather than the working directory itself.
    """
    return Path(_env(DATA_DIR_ENV, ".flip")).resolve()


def local_stack_env_file() -> Path:
    """Where ``flip-pipelines dev`` leaves the running local stack's settings (S3 endpoint and keys, buckets, FL-API
    token, database) for commands started from another shell in the same folder."""
    return data_dir() / "stack.env"


def write_local_stack_env(values: dict[str, str]) -> None:
    values = {**values, LOCAL_STACK_PID_ENV: str(os.getpid())}
    write_private_file(local_stack_env_file(),
                       "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(values.items())))


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (keys, tokens) so that only its owner can ever read it: a new file is created
    beside it with mode 0600 from the start (``O_CREAT | O_EXCL``: no write-then-chmod window; a umask can only
    narrow it) and renamed over ``path``, which also replaces a file left behind with a wider mode."""
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def use_local_stack_env() -> None:
    """Adopt the running local stack's settings for every variable not set already (a second terminal after
    ``make dev`` needs no setup); the file is shell-sourceable too."""
    path = local_stack_env_file()
    if not path.exists():
        return
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = shlex.split(value)[0] if value else ""
    pid = int(values.get(LOCAL_STACK_PID_ENV, "0") or 0)
    if not pid or not _pid_alive(pid):
        return  # left behind by a stack that was killed: its servers are gone
    for key, value in values.items():
        if key and not os.environ.get(key):
            os.environ[key] = value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def database_url() -> str:
    """The queue database URL: ``FLIP_DATABASE_URL``, else a SQLite file in the data folder."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        return url
    return f"sqlite:///{data_dir() / 'flip.db'}"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def s3_endpoint_url() -> str | None:
    """``FLIP_S3_ENDPOINT_URL`` (SeaweedFS, MinIO, ...); unset means AWS."""
    return os.environ.get("FLIP_S3_ENDPOINT_URL", "").strip() or None


def s3_region() -> str:
    return _env("FLIP_S3_REGION", "us-east-1")


def model_bucket() -> str:
    """Where model owners' files live, as ``<model_id>/...`` (FLIP's scanned model files bucket)."""
    return _env("FLIP_MODEL_BUCKET", "flip-model-files")


def bundle_bucket() -> str:
    """Where bundles are assembled, as ``<model_id>/...`` (FLIP's FL app destination bucket)."""
    return _env("FLIP_BUNDLE_BUCKET", "flip-fl-apps")


def results_bucket() -> str:
    return _env("FLIP_RESULTS_BUCKET", "flip-results")


def base_app_source() -> str:
    """``package`` (the templates shipped in flip_pipelines), ``s3://bucket/prefix`` or a local folder: the base
    applications of every net that names none of its own in ``FLIP_NET_OPTIONS``."""
    return _env("FLIP_BASE_APP_SOURCE", "package")


def presign_ttl_seconds() -> int:
    return int(_env("FLIP_PRESIGN_TTL_SECONDS", "1800"))


def max_model_file_bytes() -> int:
    return int(_env("FLIP_MAX_MODEL_FILE_BYTES", str(5 * 1024**3)))


def reconcile_interval_seconds() -> int:
    """How often the reconcile sensor checks in-progress jobs against their FL servers (read when the code
    location loads)."""
    return int(_env("FLIP_RECONCILE_INTERVAL_SECONDS", "30"))


def monitor_poll_seconds(requested: float | None = None) -> float:
    """Seconds between a training run's status polls: ``requested`` (the run's config), else
    FLIP_MONITOR_POLL_SECONDS (default 5)."""
    return requested or float(_env("FLIP_MONITOR_POLL_SECONDS", "5"))


def stale_heartbeat_seconds() -> float:
    """How long a started run may go without a heartbeat before it counts as dead (FLIP_MONITOR_STALE_SECONDS).

    Dagster's default run launcher cannot tell that a run worker was killed, so the run would stay STARTED."""
    return float(_env("FLIP_MONITOR_STALE_SECONDS", "120"))


def heartbeat_seconds() -> float:
    """How often a run renews its heartbeat: every 5 s, or a third of the staleness threshold if that is shorter
    (so one slow write never makes a live run look dead)."""
    return min(5.0, stale_heartbeat_seconds() / 3)


def claim_grace_seconds() -> float:
    """How long a claimed job may wait for its run to appear before reconciliation puts it back in the queue
    (FLIP_CLAIM_GRACE_SECONDS, default 60): the queue sensor claims, then the daemon creates the run."""
    return float(_env("FLIP_CLAIM_GRACE_SECONDS", "60"))


OWNER_ID_ENV = "FLIP_OWNER_ID"
HUB_SERVICE_USER_ID = "00000000-0000-4000-8000-f11900000001"
"""Owner of projects and models the hub's CLI creates when FLIP_OWNER_ID is unset (FLIP requires one)."""


def owner_id() -> str:
    """The user id (your identity provider's ``sub`` on a FLIP hub) recorded as owner of the projects, queries
    and models the CLI creates; ``FLIP_OWNER_ID``, else the hub service's fixed id."""
    return os.environ.get(OWNER_ID_ENV, "").strip() or HUB_SERVICE_USER_ID


NET_OPTIONS_ENV = "FLIP_NET_OPTIONS"


def net_options(net: str) -> "NetOptions":
    """How to talk to net ``net``'s FL API (``FLIP_NET_OPTIONS``; see ``domain.net_options``).

    Raises:
        InvalidInputError: FLIP_NET_OPTIONS is malformed.
    """
    from flip_pipelines.domain.net_options import NetOptions

    return all_net_options().get(net, NetOptions())


def all_net_options() -> dict[str, "NetOptions"]:
    """Every net ``FLIP_NET_OPTIONS`` names, with its options.

    Raises:
        InvalidInputError: FLIP_NET_OPTIONS is malformed.
    """
    from flip_pipelines.domain.net_options import parse_net_options

    return parse_net_options(os.environ.get(NET_OPTIONS_ENV, ""))


def pushed_status_grace_seconds() -> float:
    """How long a training on a net whose FL server pushes its final status (FLIP's) waits for that push after
    the FL job finished (``FLIP_PUSHED_STATUS_GRACE_SECONDS``, default 300)."""
    return float(_env("FLIP_PUSHED_STATUS_GRACE_SECONDS", "300"))


def alert_webhook_url() -> str:
    """Where failed trainings are posted (Slack-compatible incoming webhook); empty: no alerts."""
    return os.environ.get("FLIP_ALERT_WEBHOOK_URL", "").strip()


def dagster_ui_url() -> str:
    """The Dagster UI's address, for links in alerts (``FLIP_DAGSTER_UI_URL``); empty: no link."""
    return os.environ.get("FLIP_DAGSTER_UI_URL", "").strip()


def alert_retry_schedule() -> "RetrySchedule":
    """How long an alert the webhook did not take waits before it is sent again: ``FLIP_ALERT_RETRY_SECONDS``
    (default 10) after the first failed attempt, doubling up to ``FLIP_ALERT_RETRY_MAX_SECONDS`` (default 900)."""
    from flip_pipelines.domain.alert_outbox import RetrySchedule

    first = max(float(_env("FLIP_ALERT_RETRY_SECONDS", "10")), 0.0)
    return RetrySchedule(first, max(float(_env("FLIP_ALERT_RETRY_MAX_SECONDS", "900")), first))
