"""Failed trainings are posted to a chat webhook — a real local HTTP receiver here — and nowhere while none is
set; the message names the model, net and reason, links the run, and carries no secret. A webhook that is down
(port closed, then answering 503) loses no alert: each failed run is posted exactly once when it is back."""

import time
from collections.abc import Callable, Iterator

import dagster as dg
import pytest

from flip_pipelines.definitions import defs
from flip_pipelines.domain.alert_outbox import AlertOutbox, decode_outbox
from flip_pipelines.domain.alerts import failure_alert
from flip_pipelines.sensors.alerts import training_failure_alert_sensor
from flip_pipelines_tests.webhook_receiver import Receiver

train_model = defs.resolve_job_def("train_model")
resume_training = defs.resolve_job_def("resume_training")
queue_watchdog = defs.resolve_job_def("queue_watchdog")
MODEL_ID = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def closed_receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def receiver(closed_receiver: Receiver) -> Receiver:
    closed_receiver.open()
    return closed_receiver


def _missing_db():  # type: ignore[no-untyped-def]
    from flip_pipelines.resources.database import QueueDatabase

    return QueueDatabase(url="sqlite:////nonexistent-folder/none.db")


def _failed_training(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """A train_model run that fails in its first op: the queue database does not exist."""
    result = train_model.execute_in_process(
        run_config={"ops": {"resolve_backend": {"config": {"model_id": MODEL_ID}}}},
        resources={"queue_db": _missing_db()},
        tags={"flip/model": "chest-xray", "flip/net": "net-nvflare"}, instance=instance, raise_on_error=False)
    assert not result.success
    return result


def _failed_resume(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = resume_training.execute_in_process(
        run_config={"ops": {"load_submitted_training": {"config": {"fl_job_id": MODEL_ID}}}},
        resources={"queue_db": _missing_db()}, instance=instance, raise_on_error=False)
    assert not result.success
    return result


def _failed_watchdog(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """A failed run of a job the alerts do not watch."""
    result = queue_watchdog.execute_in_process(resources={"queue_db": _missing_db()}, instance=instance,
                                               raise_on_error=False)
    assert not result.success
    return result


class Sensor:
    """The alert sensor evaluated tick after tick on a real instance, its cursor carried as the daemon would."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor: str | None = None
        self.ticks = 0

    def tick(self) -> None:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        self.cursor = training_failure_alert_sensor.evaluate_tick(context).cursor
        self.ticks += 1

    def outbox(self) -> AlertOutbox:
        outbox = decode_outbox(self.cursor)
        assert outbox is not None
        return outbox

    def owed(self) -> dict[str, int]:
        """The alerts the cursor keeps: failed attempts by run."""
        return {a.run_id: a.failed_attempts for a in self.outbox().owed}

    def tick_until(self, done: Callable[[], bool], what: str, deadline_seconds: float = 15.0) -> None:
        deadline = time.monotonic() + deadline_seconds
        while not done():
            assert time.monotonic() < deadline, f"{what}: not within {deadline_seconds} s ({self.ticks} ticks)"
            self.tick()
            time.sleep(0.01)  # poll interval

    def tick_for(self, seconds: float) -> None:
        """Keep ticking for a while: long enough for any retry that would be due to be made."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.tick()
            time.sleep(0.01)  # poll interval


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIP_ALERT_RETRY_SECONDS", "0.05")
    monkeypatch.setenv("FLIP_ALERT_RETRY_MAX_SECONDS", "0.2")


def test_a_failed_training_is_posted_with_model_net_reason_and_link(receiver: Receiver,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIP_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("FLIP_DAGSTER_UI_URL", "http://dagster.hub.example:3000/")
    with dg.instance_for_test() as instance:
        sensor = Sensor(instance)
        sensor.tick()  # the first tick starts from the newest failure
        result = _failed_training(instance)
        sensor.tick()
    [post] = receiver.posts
    assert post["content_type"] == "application/json"
    text = post["json"]["text"]
    assert text.startswith(":rotating_light: Training of chest-xray on net-nvflare failed: resolve_backend failed")
    assert "Traceback" not in text and "\n" not in text
    fields = [f["text"] for f in post["json"]["blocks"][1]["fields"]]
    assert f"*Run*\n{result.run_id}" in fields and "*Net*\nnet-nvflare" in fields
    assert post["json"]["blocks"][2]["elements"][0]["url"] == f"http://dagster.hub.example:3000/runs/{result.run_id}"


def test_nothing_is_sent_while_no_webhook_is_set(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLIP_ALERT_WEBHOOK_URL", raising=False)
    with dg.instance_for_test() as instance:
        sensor = Sensor(instance)
        sensor.tick()
        _failed_training(instance)
        sensor.tick()
        sensor.tick()
        assert sensor.owed() == {}, "no alert is kept for later either"
    assert receiver.posts == []


def test_alerts_of_runs_that_failed_while_the_webhook_was_down_are_posted_once_when_it_is_back(
        closed_receiver: Receiver, fast_retries: None, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = closed_receiver
    monkeypatch.setenv("FLIP_ALERT_WEBHOOK_URL", receiver.url)
    with dg.instance_for_test() as instance:
        sensor = Sensor(instance)
        sensor.tick()
        first, refused = _failed_training(instance).run_id, _failed_training(instance).run_id
        resumed = _failed_resume(instance).run_id
        unwatched = _failed_watchdog(instance).run_id

        sensor.tick()  # port closed: connection refused
        assert sensor.owed() == {first: 1, refused: 0, resumed: 0}, "one alert tested the webhook; none is lost"
        receiver.open()
        receiver.status = 503
        sensor.tick_until(lambda: receiver.posts != [], "the webhook is tried again after its wait")
        assert sensor.owed() == {first: 2, refused: 0, resumed: 0}

        receiver.status = 200
        receiver.refused_runs = {refused}
        sensor.tick_until(lambda: set(receiver.answered(200)) == {first, resumed} and receiver.answered(400),
                          "the alerts owed are posted once the webhook is back")
        later = _failed_training(instance).run_id
        sensor.tick_until(lambda: later in receiver.answered(200), "a run that fails later is alerted")
        sensor.tick_for(0.6)  # three times the longest retry wait
        assert sensor.owed() == {}

    assert receiver.answered(200) == {first: 1, resumed: 1, later: 1}, "each failed run posted exactly once"
    assert receiver.answered(400) == {refused: 1}, "a refused alert is not sent again"
    assert receiver.answered(503) == {first: 1}
    assert unwatched not in {p["run_id"] for p in receiver.posts}


def test_the_alert_redacts_presigned_urls_and_keeps_one_line() -> None:
    message = failure_alert(job_name="train_model", run_id="r" * 36, model=None, net=None, run_url=None,
                            reason="download failed: https://s3/b/k?X-Amz-Signature=abcdef0123456789&X-Amz-Credential=AK\n"
                                   "  File \"x.py\", line 1")
    assert "abcdef0123456789" not in message["text"] and "File" not in message["text"]
    assert message["text"].startswith(":rotating_light: Run rrrrrrrr of train_model failed: download failed")
    assert len(message["blocks"]) == 2, "no link without FLIP_DAGSTER_UI_URL"
