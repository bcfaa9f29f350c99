"""What a pushed status does, for every (current, pushed) pair of model statuses — FLIP's update_model_status."""

import itertools

import pytest

from flip_pipelines.domain.enums import ModelStatus
from flip_pipelines.domain.pushes import ENDS_TRAINING, IGNORED_WHEN_STOPPED, MESSAGES, pushed_status_effect


@pytest.mark.parametrize(("current", "pushed"), list(itertools.product(ModelStatus, ModelStatus)))
def test_pushed_status_effect_covers_every_pair(current: ModelStatus, pushed: ModelStatus) -> None:
    effect = pushed_status_effect(current, pushed)
    if current == ModelStatus.STOPPED and pushed in IGNORED_WHEN_STOPPED:
        assert (effect.applied, effect.ends_training, effect.message) == (False, False, None)
        return
    assert effect.applied
    assert effect.ends_training == (current != pushed and pushed in ENDS_TRAINING)
    assert effect.message == MESSAGES.get(pushed)
    assert effect.success == (pushed not in {ModelStatus.ERROR, ModelStatus.STOPPED, ModelStatus.RESULTS_UPLOAD_FAILED})


def test_a_stopped_model_can_be_queued_again_but_ignores_late_reports() -> None:
    assert pushed_status_effect(ModelStatus.STOPPED, ModelStatus.INITIATED).applied, "FLIP #787"
    assert not pushed_status_effect(ModelStatus.STOPPED, ModelStatus.RESULTS_UPLOADED).applied
    assert pushed_status_effect(ModelStatus.RUNNING, ModelStatus.RESULTS_UPLOADED).ends_training
    assert not pushed_status_effect(ModelStatus.ERROR, ModelStatus.ERROR).ends_training, "only a change ends it"
