"""The training jobs: one Dagster run per training attempt, in one process (the multiprocess executor costs
seconds per op). Dagster's run retries skip them (``dagster/max_retries: 0``): the reconcile sensor restarts or
resumes a training whose run died, from what its FL server says. The definitions give them the in-memory IO
manager, so presigned URLs passed between ops are never written to run storage; running a job again for the same
claim is safe (every op checks the lifecycle)."""

import dagster as dg

from flip_pipelines.assets.training import MODEL_PARTITIONS
from flip_pipelines.ops.monitor import load_submitted_training, monitor
from flip_pipelines.ops.training import bundle, presign, resolve_backend, submit, validate_clients

TRAINING_TAGS = {"flip/kind": "training", "dagster/max_retries": "0"}


@dg.job(
    executor_def=dg.in_process_executor,
    partitions_def=MODEL_PARTITIONS,
    description="Train a model on a net: resolve_backend → validate_clients → bundle → presign → submit → monitor. "
                "Launch it by picking the model (its partition); no config is needed.",
    tags=TRAINING_TAGS,
)
def train_model() -> None:
    claim = validate_clients(resolve_backend())
    monitor(claim, submit(claim, presign(bundle(claim))))


@dg.job(
    executor_def=dg.in_process_executor,
    description="Resume monitoring a submitted training whose run died (started by the reconcile sensor).",
    tags=TRAINING_TAGS,
)
def resume_training() -> None:
    claim, submitted = load_submitted_training()
    monitor(claim, submitted)
