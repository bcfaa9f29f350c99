import uuid
from datetime import UTC, datetime, timedelta

from flip_pipelines.domain.uploaded_results import (
    StoredObject,
    finished_without_pushed_status,
    no_pushed_status_nor_result,
    uploaded_result,
)

MODEL = uuid.UUID("6f1c0b52-1d57-4a55-9a3e-0f3d2a7a9c10")
STARTED = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)


def _object(key: str, seconds_after_start: float) -> StoredObject:
    return StoredObject(key, 100, STARTED + timedelta(seconds=seconds_after_start))


def test_the_result_is_the_newest_flip_named_zip_of_the_model_written_since_the_training_started() -> None:
    earlier_training = _object(f"{MODEL}/20261205_113000.zip", -1800)
    first, newest = _object(f"{MODEL}/20261205_120100.zip", 60), _object(f"{MODEL}/20261205_120200.zip", 120)
    not_flips = [_object(f"{MODEL}/{uuid.uuid4()}.zip", 90), _object(f"{MODEL}/20261205_120300.tar", 180),
                 _object(f"{MODEL}/nested/20261205_120300.zip", 180),
                 _object(f"{uuid.uuid4()}/20261205_120300.zip", 180)]
    assert uploaded_result([earlier_training, newest, first, *not_flips], MODEL, STARTED) == newest
    assert uploaded_result([earlier_training, *not_flips], MODEL, STARTED) is None, "a retried model's old result"
    assert uploaded_result([], MODEL, STARTED) is None


def test_an_s3_clock_a_few_seconds_behind_the_hubs_still_counts() -> None:
    lagging = _object(f"{MODEL}/20261205_115955.zip", -5)
    assert uploaded_result([lagging], MODEL, STARTED) == lagging


def test_the_reasons_read_as_sentences() -> None:
    assert no_pushed_status_nor_result("job-1", 300.0, f"s3://results/{MODEL}/") == (
        f"FL job job-1 finished but its FL server pushed no final status within 300 s and no result is in "
        f"s3://results/{MODEL}/")
    assert finished_without_pushed_status("s3://results/k.zip", 1.5) == (
        "Training finished; results at s3://results/k.zip (its FL server pushed no final status within 1.5 s)")
