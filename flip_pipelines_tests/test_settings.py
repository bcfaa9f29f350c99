"""Settings read from the environment, and the local stack's private files."""

import os
import stat
import sys
from pathlib import Path

import pytest

from flip_pipelines import settings


def test_monitor_poll_interval_from_config_env_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLIP_MONITOR_POLL_SECONDS", raising=False)
    assert settings.monitor_poll_seconds() == 5
    monkeypatch.setenv("FLIP_MONITOR_POLL_SECONDS", "2")
    assert settings.monitor_poll_seconds() == 2
    assert settings.monitor_poll_seconds(0.5) == 0.5, "a run's own config wins"


def test_heartbeat_beats_at_least_three_times_within_the_staleness_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLIP_MONITOR_STALE_SECONDS", raising=False)
    assert settings.stale_heartbeat_seconds() == 120 and settings.heartbeat_seconds() == 5
    monkeypatch.setenv("FLIP_MONITOR_STALE_SECONDS", "6")
    assert settings.heartbeat_seconds() == 2


SETTINGS_DEFAULTS = {
    "FLIP_S3_ENDPOINT_URL": (settings.s3_endpoint_url, None),
    "FLIP_S3_REGION": (settings.s3_region, "us-east-1"),
    "FLIP_MODEL_BUCKET": (settings.model_bucket, "flip-model-files"),
    "FLIP_BASE_APP_SOURCE": (settings.base_app_source, "package"),
    "FLIP_PRESIGN_TTL_SECONDS": (settings.presign_ttl_seconds, 1800),
    "FLIP_MAX_MODEL_FILE_BYTES": (settings.max_model_file_bytes, 5 * 1024**3),
    "FLIP_RECONCILE_INTERVAL_SECONDS": (settings.reconcile_interval_seconds, 30),
    "FLIP_MONITOR_POLL_SECONDS": (settings.monitor_poll_seconds, 5),
    "FLIP_MONITOR_STALE_SECONDS": (settings.stale_heartbeat_seconds, 120),
    "FLIP_CLAIM_GRACE_SECONDS": (settings.claim_grace_seconds, 60),
    "FLIP_OWNER_ID": (settings.owner_id, settings.HUB_SERVICE_USER_ID),
    "FLIP_PUSHED_STATUS_GRACE_SECONDS": (settings.pushed_status_grace_seconds, 300),
    "FLIP_ALERT_WEBHOOK_URL": (settings.alert_webhook_url, ""),
    "FLIP_DAGSTER_UI_URL": (settings.dagster_ui_url, ""),
    "FLIP_DATA_DIR": (settings.data_dir, Path(".flip").resolve()),
}


@pytest.mark.parametrize("variable", SETTINGS_DEFAULTS)
def test_an_empty_variable_means_the_default(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployments pass every setting, empty where the operator set nothing (compose's `${X:-}`, an empty
    ConfigMap value): empty must read as unset, not fail a run."""
    read, default = SETTINGS_DEFAULTS[variable]
    monkeypatch.setenv(variable, "")
    assert read() == default


_OPENED: list[tuple[str, tuple]] | None = None


def _record(event: str, args: tuple) -> None:
    if _OPENED is not None and event in ("open", "os.chmod", "os.rename"):
        _OPENED.append((event, args))


def test_a_private_file_is_never_readable_by_others(tmp_path: Path) -> None:
    """``write_private_file`` replaces a file (one left behind readable by all included) with one that is the
    owner's alone from its creation: created new (O_CREAT | O_EXCL) with mode 0600 and never chmod-ed — so,
    with no umask to narrow it, the mode it ends with is the mode it was born with. Seen through Python's audit
    events of every open, chmod and rename under the folder."""
    global _OPENED
    target = tmp_path / "stack.env"
    target.write_text("export OLD=1\n")
    target.chmod(0o644)
    sys.addaudithook(_record)  # hooks cannot be removed: this one records only while _OPENED is a list
    umask = os.umask(0)
    _OPENED = []
    try:
        settings.write_private_file(target, "export FLIP_FL_API_TOKEN=secret\n")
        events = [(e, a) for e, a in _OPENED if isinstance(a[0], (str, bytes, os.PathLike))
                  and str(os.fsdecode(a[0])).startswith(str(tmp_path))]
        chmods = [a for e, a in _OPENED if e == "os.chmod"]
    finally:
        _OPENED = None
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "export FLIP_FL_API_TOKEN=secret\n"
    opened = [a for e, a in events if e == "open"]
    assert opened and all(flags & os.O_CREAT and flags & os.O_EXCL for _, _, flags in opened), opened
    assert not chmods, "no mode changed after creation"
    assert [os.fsdecode(a[1]) for e, a in events if e == "os.rename"] == [str(target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.env"], "no temporary file left"
