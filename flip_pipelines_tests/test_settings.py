"""Settings read from the environment."""

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
