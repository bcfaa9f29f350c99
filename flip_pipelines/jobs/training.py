"""The training job: one Dagster run per training attempt, in one process (the multiprocess executor costs
seconds per op). The definitions give it the in-memory IO manager, so presigned URLs passed between ops are
never written to run storage; a re-execution runs every op again (submission is idempotent)."""

import dagster as dg

from flip_pipelines.ops.training import (
    bundle,
    load_submitted_training,
    monitor,
    presign,
    resolve_backend,
    submit,
    validate_clients,
)


@dg.job(
    executor_def=dg.in_process_executor,
    description="Train a model on a net: resolve_backend → validate_clients → bundle → presign → submit → monitor.",
    tags={"flip/kind": "training"},
)
def train_model() -> None:
    target = validate_clients(resolve_backend())
    monitor(target, submit(target, presign(bundle(target))))


@dg.job(
    executor_def=dg.in_process_executor,
    description="Resume monitoring a submitted training whose run died (started by the reconcile sensor).",
    tags={"flip/kind": "training"},
)
def resume_training() -> None:
    target, submitted = load_submitted_training()
    monitor(target, submitted)
