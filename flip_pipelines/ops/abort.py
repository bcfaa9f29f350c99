"""The abort_training op: a thin wrapper around ``services.abort``."""

import dagster as dg

from flip_pipelines.domain.errors import FlipError
from flip_pipelines.ops.training import parse_uuid
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.services.abort import abort_model_training


class AbortConfig(dg.Config):
    model_id: str


@dg.op(description="Dequeue the model's jobs, abort its FL job (pending or running), free the net, mark STOPPED.")
def abort_model(context: dg.OpExecutionContext, config: AbortConfig, queue_db: QueueDatabase,
                fl_api: FLApiResource) -> str:
    model_id = parse_uuid(config.model_id, "model_id")
    try:
        with queue_db.session() as session:
            report = abort_model_training(
                session, lambda net: fl_api.client(net.endpoint, net=net.name), model_id)
    except FlipError as exc:
        raise dg.Failure(f"cannot abort model {config.model_id}: {exc}", allow_retries=False) from exc
    context.log.info(report.summary())
    context.add_output_metadata({"dequeued": report.dequeued, "aborted": ", ".join(report.aborted) or "none"})
    if report.problems:
        raise dg.Failure(report.summary(), allow_retries=False)
    return report.summary()
