"""Which job an attempt adopts on an FL API that ignores the submit token (FLIP's), from what FLIP's
``/list_jobs`` really gives: job ids in submission order, filtered by the model id as job name."""

import pytest

from flip_pipelines.domain.submission import Adoption, encode_job_ids, job_to_adopt, listed_before_first_attempt

EARLIER_TRAINING, OURS, STRAY = "job-of-an-earlier-training", "job-of-this-training", "job-submitted-since-by-other"


@pytest.mark.parametrize(("listed", "before", "adopted"), [
    ([], None, Adoption(None)),  # first attempt: nothing noted yet, so nothing of ours can be there
    ([EARLIER_TRAINING], None, Adoption(None)),  # first attempt: an earlier training's job is never adopted
    ([EARLIER_TRAINING], frozenset({EARLIER_TRAINING}), Adoption(None)),  # retry before the server took anything
    ([EARLIER_TRAINING, OURS], frozenset({EARLIER_TRAINING}), Adoption(OURS)),  # the lost answer's job
    ([OURS], frozenset(), Adoption(OURS)),  # the model's first training
    ([OURS], frozenset({EARLIER_TRAINING}), Adoption(OURS)),  # the earlier training's job was deleted since
    ([EARLIER_TRAINING, OURS, STRAY], frozenset({EARLIER_TRAINING}), Adoption(OURS, (STRAY,))),  # the oldest
    ([OURS, OURS], frozenset(), Adoption(OURS)),
])
def test_only_a_job_listed_since_the_first_attempts_note_is_adopted(
        listed: list[str], before: frozenset[str] | None, adopted: Adoption) -> None:
    assert job_to_adopt(listed, before) == adopted


def test_the_first_attempts_note_counts_not_a_later_one_that_may_hold_the_trainings_own_job() -> None:
    first, second = encode_job_ids([EARLIER_TRAINING]), encode_job_ids([EARLIER_TRAINING, OURS])
    assert listed_before_first_attempt([None, first, second]) == frozenset({EARLIER_TRAINING})
    assert job_to_adopt([EARLIER_TRAINING, OURS], listed_before_first_attempt([first, second])) == Adoption(OURS)
    assert listed_before_first_attempt([encode_job_ids([])]) == frozenset()
    assert listed_before_first_attempt([]) is None and listed_before_first_attempt([None, None]) is None
    assert listed_before_first_attempt(["not json", '{"a": 1}', "[1]", first]) == frozenset({EARLIER_TRAINING})
