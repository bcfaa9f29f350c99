"""Run launchers of the local Dagster instance (``dagster.yaml``): ``PrewarmedRunLauncher``.

Loaded on first use: the run-worker template imports ``launcher.workers`` before it has imported Dagster.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "PrewarmedRunLauncher":
        from flip_pipelines.launcher.prewarmed import PrewarmedRunLauncher

        return PrewarmedRunLauncher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
