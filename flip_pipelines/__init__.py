"""flip_pipelines: federated-learning training orchestration on Dagster."""

__version__ = "0.1.0"
