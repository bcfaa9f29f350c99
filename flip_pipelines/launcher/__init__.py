"""Run launchers of the local Dagster instance (``dagster.yaml``): ``PrewarmedRunLauncher``."""

from flip_pipelines.launcher.prewarmed import PrewarmedRunLauncher

__all__ = ["PrewarmedRunLauncher"]
