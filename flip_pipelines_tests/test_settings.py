"""Settings read from the environment."""

import pytest

from flip_pipelines import settings


def test_monitor_poll_interval_from_config_env_or_default_and_within_the_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLIP_MONITOR_POLL_SECONDS", raising=False)
    monkeypatch.delenv("FLIP_MONITOR_STALE_SECONDS", raising=False)
    assert settings.monitor_poll_seconds() == 5
    monkeypatch.setenv("FLIP_MONITOR_POLL_SECONDS", "2")
    assert settings.monitor_poll_seconds() == 2
    assert settings.monitor_poll_seconds(0.5) == 0.5, "a run's own config wins"
    monkeypatch.setenv("FLIP_MONITOR_STALE_SECONDS", "3")
    assert settings.monitor_poll_seconds() == 1, "never slower than a third of the staleness threshold"
    assert settings.monitor_poll_seconds(10) == 1
