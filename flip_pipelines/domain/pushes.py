"""What a status pushed by an FL server does to a model, as FLIP's ``update_model_status`` and its internal route
decide it — pure, so the table test covers every pair of statuses."""

from dataclasses import dataclass

from flip_pipelines.domain.enums import ModelStatus

IGNORED_WHEN_STOPPED: frozenset[ModelStatus] = frozenset({
    ModelStatus.PREPARED, ModelStatus.RUNNING, ModelStatus.ERROR, ModelStatus.RESULTS_UPLOADED,
    ModelStatus.RESULTS_UPLOAD_FAILED,
})
"""A stopped model ignores what its FL server still reports (FLIP's ``_IGNORED_WHEN_STOPPED``)."""

ENDS_TRAINING: frozenset[ModelStatus] = frozenset({
    ModelStatus.ERROR, ModelStatus.STOPPED, ModelStatus.RESULTS_UPLOADED, ModelStatus.RESULTS_UPLOAD_FAILED,
})
"""Statuses after which the model's job is COMPLETED and its net freed (FLIP's ``update_fl_scheduler``)."""

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
    applied: bool  # the model takes the status (False: a stopped model ignores it)
    ends_training: bool  # the model's job ends and its net is freed
    message: str | None  # the fl_logs line, if any
    success: bool


def pushed_status_effect(current: ModelStatus, pushed: ModelStatus) -> PushedStatusEffect:
    if current == ModelStatus.STOPPED and pushed in IGNORED_WHEN_STOPPED:
        return PushedStatusEffect(False, False, None, True)
    changed = current != pushed
    return PushedStatusEffect(
        applied=True,
        ends_training=changed and pushed in ENDS_TRAINING,
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
