"""What a status pushed by an FL server does to a model, as FLIP's ``update_model_status`` and its internal route
decide it — pure, so the table test covers every pair of statuses."""

from dataclasses import dataclass

from flip_pipelines.domain.enums import ModelStatus
from flip_pipelines.domain.lifecycle import Outcome

IGNORED_WHEN_STOPPED: frozenset[ModelStatus] = frozenset({
    ModelStatus.PREPARED, ModelStatus.RUNNING, ModelStatus.ERROR, ModelStatus.RESULTS_UPLOADED,
    ModelStatus.RESULTS_UPLOAD_FAILED,
})
"""A stopped model ignores what its FL server still reports (FLIP's ``_IGNORED_WHEN_STOPPED``)."""

ENDS_TRAINING: dict[ModelStatus, Outcome] = {
    ModelStatus.ERROR: Outcome.FAILED,
    ModelStatus.STOPPED: Outcome.STOPPED,
    ModelStatus.RESULTS_UPLOADED: Outcome.FINISHED,
    ModelStatus.RESULTS_UPLOAD_FAILED: Outcome.FAILED,
}
"""Final statuses: the training ends with this outcome — job COMPLETED, its net AVAILABLE (FLIP's
``update_fl_scheduler``) — and the model takes the pushed status itself."""

MESSAGES: dict[ModelStatus, str] = {
    ModelStatus.ERROR: "There has been an error whilst running the job for this model.",
    ModelStatus.STOPPED: "The job for this model has been stopped.",
    ModelStatus.INITIATED: "This model has been selected from the queue and will be prepared to run.",
    ModelStatus.PREPARED: "This model has been prepared and its job will begin shortly.",
    ModelStatus.RUNNING: "The job for this model is now running.",
    ModelStatus.RESULTS_UPLOADED: "The results of this model have been uploaded and can now be downloaded.",
    ModelStatus.RESULTS_UPLOAD_FAILED: "The job completed successfully, but uploading the results failed.",
}
"""FLIP's log line per pushed status (PENDING has none)."""


@dataclass(frozen=True)
class PushedStatusEffect:
    applied: bool  # the model takes the status (False: a late report, ignored)
    ends_training: Outcome | None  # the running training ends so (its job COMPLETED, its net freed), or None
    message: str | None  # the fl_logs line, if any
    success: bool


def pushed_status_effect(current: ModelStatus, pushed: ModelStatus, training_running: bool) -> PushedStatusEffect:
    """``training_running``: the model has a training running on a net, which a final status ends.

    A final status with none running is a late report — pushed again, or the hub ended the training first (whoever
    ended it decided its outcome) — and is ignored, as a stopped model ignores late reports. FLIP ends the model's
    newest job instead, when the status changed: a QUEUED job when the model was queued again meanwhile."""
    ignored = PushedStatusEffect(False, None, None, True)
    if current == ModelStatus.STOPPED and pushed in IGNORED_WHEN_STOPPED:
        return ignored
    if pushed in ENDS_TRAINING and not training_running:
        return ignored
    return PushedStatusEffect(
        applied=True,
        ends_training=ENDS_TRAINING.get(pushed),
        message=MESSAGES.get(pushed),
        success=pushed not in (ModelStatus.ERROR, ModelStatus.STOPPED, ModelStatus.RESULTS_UPLOAD_FAILED),
    )


@dataclass(frozen=True)
class MetricPoint:
    """One client's metric in one round, as ``fl_metrics`` holds it."""

    fl_client_name: str
    global_round: int
    label: str
    result: float
    x_label: str
    x_value: float
