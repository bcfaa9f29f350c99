"""Stopping a model's training: dequeue, end its claimed jobs, abort its FL jobs (PENDING or RUNNING)."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session

from flip_pipelines.db import lifecycle
from flip_pipelines.domain.queue import NetDetails
from flip_pipelines.fl_api.client import FLApiClient, FLApiError, FLApiNotFoundError


@dataclass
class AbortReport:
    model_id: str
    dequeued: int = 0
    stopped: int = 0
    aborted: list[str] = field(default_factory=list)  # "<net>:<backend job id> → <status>"
    problems: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return self.dequeued == 0 and self.stopped == 0 and not self.problems

    def summary(self) -> str:
        if self.nothing_to_do:
            return f"model {self.model_id} has no queued or running training: nothing to abort"
        parts = [f"model {self.model_id} STOPPED", f"{self.dequeued} queued job(s) removed",
                 f"{self.stopped} claimed job(s) ended"]
        parts += [f"aborted {a}" for a in self.aborted] + self.problems
        return "; ".join(parts)


def abort_model_training(session: Session, client_for: Callable[[NetDetails], FLApiClient], model_id: uuid.UUID,
                         reason: str = "Training aborted by request") -> AbortReport:
    """One lifecycle transition (``abort_model``), then each submitted FL job aborted on its net.

    Unlike FLIP, a backend job still PENDING is aborted too (FLIP only aborted RUNNING ones, #787); a run still
    preparing its job stops at its abort gate. An FL server that cannot be reached is reported, not retried: the
    training is already STOPPED and its net free.

    Raises:
        NotFoundError: unknown model.
    """
    aborted = lifecycle.abort_model(session, model_id, reason)
    report = AbortReport(model_id=str(model_id), dequeued=aborted.dequeued, stopped=len(aborted.stopped_jobs))
    for net, backend_job_id in aborted.backend_jobs:
        try:
            with client_for(net) as client:
                status = client.abort_job(backend_job_id).status.value
            report.aborted.append(f"{net.name}:{backend_job_id} → {status}")
        except FLApiNotFoundError:
            report.aborted.append(f"{net.name}:{backend_job_id} → already gone")
        except FLApiError as exc:
            report.problems.append(f"could not abort {net.name}:{backend_job_id}: {exc}")
    return report
