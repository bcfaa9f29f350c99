"""What a pushed status does, for every (current, pushed) pair of model statuses, with and without a training
running on a net — FLIP's update_model_status, a final status ending the running training only."""

import itertools

import pytest

from flip_pipelines.domain.enums import ModelStatus
from flip_pipelines.domain.lifecycle import Outcome
from flip_pipelines.domain.pushes import ENDS_TRAINING, IGNORED_WHEN_STOPPED, MESSAGES, pushed_status_effect


@pytest.mark.parametrize(("current", "pushed", "running"),
                         list(itertools.product(ModelStatus, ModelStatus, (True, False))))
def test_pushed_status_effect_covers_every_pair(current: ModelStatus, pushed: ModelStatus, running: bool) -> None:
    effect = pushed_status_effect(current, pushed, training_running=running)
    late = (current == ModelStatus.STOPPED and pushed in IGNORED_WHEN_STOPPED) or (
        pushed in ENDS_TRAINING and not running)
    if late:
        assert (effect.applied, effect.ends_training, effect.message) == (False, None, None)
        return
    assert effect.applied
    assert effect.ends_training == ENDS_TRAINING.get(pushed)
    assert effect.message == MESSAGES.get(pushed)
    assert effect.success == (pushed not in {ModelStatus.ERROR, ModelStatus.STOPPED, ModelStatus.RESULTS_UPLOAD_FAILED})
    if effect.ends_training is not None:
        assert effect.message, "the ending logged is FLIP's sentence"
        assert effect.success == (effect.ends_training == Outcome.FINISHED), "as end_training flags its reason"


def test_a_stopped_model_can_be_queued_again_but_ignores_late_reports() -> None:
    assert pushed_status_effect(ModelStatus.STOPPED, ModelStatus.INITIATED, False).applied, "FLIP #787"
    assert not pushed_status_effect(ModelStatus.STOPPED, ModelStatus.RESULTS_UPLOADED, True).applied
    assert pushed_status_effect(ModelStatus.RUNNING, ModelStatus.RESULTS_UPLOADED, True).ends_training == \
        Outcome.FINISHED
    assert pushed_status_effect(ModelStatus.ERROR, ModelStatus.ERROR, True).ends_training == Outcome.FAILED, \
        "a running training ends whatever status the model had"
    assert not pushed_status_effect(ModelStatus.RUNNING, ModelStatus.ERROR, False).applied, "nothing to end: late"
