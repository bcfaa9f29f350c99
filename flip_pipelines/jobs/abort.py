import dagster as dg

from flip_pipelines.ops.abort import abort_model


@dg.job(executor_def=dg.in_process_executor,
        description="Stop a model's training: queued jobs removed, FL job aborted (pending or running), net freed.")
def abort_training() -> None:
    abort_model()
