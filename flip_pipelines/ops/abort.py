"""Stopping a model's training: dequeue, abort on the FL server (PENDING or RUNNING), free the net."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from flip_pipelines.db import queue
from flip_pipelines.domain.errors import FlipError
from flip_pipelines.fl_api.client import FLApiClient, FLApiError, FLApiNotFoundError
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource


@dataclass
class AbortReport:
    model_id: str
    dequeued: int = 0
    aborted: list[str] = field(default_factory=list)  # "<net>:<backend job id> → <status>"
    problems: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return self.dequeued == 0 and not self.aborted and not self.problems

    def summary(self) -> str:
        if self.nothing_to_do:
            return f"model {self.model_id} has no queued or running training: nothing to abort"
        parts = [f"model {self.model_id} STOPPED", f"{self.dequeued} queued job(s) removed"]
        parts += [f"aborted {a}" for a in self.aborted] + self.problems
        return "; ".join(parts)


def abort_model_training(
    queue_db: QueueDatabase, client_for: Callable[[str], FLApiClient], model_id: uuid.UUID
) -> AbortReport:
    """Unlike FLIP, a backend job still PENDING is aborted too (FLIP only aborted RUNNING ones, #787)."""
    report = AbortReport(model_id=str(model_id))
    with queue_db.session() as session:
        nets = {job.id: net for job, net in queue.in_progress_jobs(session) if job.model_id == model_id}
        report.dequeued, running = queue.abort_model_jobs(session, model_id, "Training aborted by request")
    for job in running:
        net = nets.get(job.id)
        if job.fl_backend_job_id is None or net is None:
            report.aborted.append(f"fl_job {job.id} (not submitted yet; its run stops at the submit gate)")
            continue
        try:
            with client_for(net.endpoint) as client:
                status = client.abort_job(job.fl_backend_job_id).status.value
            report.aborted.append(f"{net.name}:{job.fl_backend_job_id} → {status}")
        except FLApiNotFoundError:
            report.aborted.append(f"{net.name}:{job.fl_backend_job_id} → already gone")
        except FLApiError as exc:
            report.problems.append(f"could not abort {net.name}:{job.fl_backend_job_id}: {exc}")
    return report


class AbortConfig(dg.Config):
    model_id: str


@dg.op(description="Dequeue the model's jobs, abort its FL job (pending or running), free the net, mark STOPPED.")
def abort_model(context: dg.OpExecutionContext, config: AbortConfig, queue_db: QueueDatabase,
                fl_api: FLApiResource) -> str:
    try:
        report = abort_model_training(queue_db, fl_api.client, uuid.UUID(config.model_id))
    except (ValueError, FlipError) as exc:
        raise dg.Failure(f"cannot abort model {config.model_id}: {exc}", allow_retries=False) from exc
    context.log.info(report.summary())
    context.add_output_metadata({"dequeued": report.dequeued, "aborted": ", ".join(report.aborted) or "none"})
    if report.problems:
        raise dg.Failure(report.summary(), allow_retries=False)
    return report.summary()
