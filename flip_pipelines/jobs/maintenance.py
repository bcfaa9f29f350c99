import dagster as dg

from flip_pipelines.ops.maintenance import recover_stale_nets


@dg.job(
    executor_def=dg.in_process_executor,
    description="The queue watchdog: frees nets left BUSY by jobs that completed, were deleted or vanished.",
)
def queue_watchdog() -> None:
    recover_stale_nets()
