"""Failed trainings are posted to a chat webhook — a real local HTTP receiver here — and nowhere while none is
set; the message names the model, net and reason, links the run, and carries no secret."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from flip_pipelines.definitions import defs
from flip_pipelines.domain.alerts import failure_alert
from flip_pipelines.sensors.alerts import training_failure_alert_sensor

train_model = defs.resolve_job_def("train_model")


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.posts: list[dict] = []
        self.status = 200


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append({"content_type": self.headers["Content-Type"], "json": json.loads(body)})
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _failed_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """A train_model run that fails in its first op: the queue database does not exist."""
    return train_model.execute_in_process(
        run_config={"ops": {"resolve_backend": {"config": {"model_id": "00000000-0000-4000-8000-000000000001"}}}},
        resources={"queue_db": _missing_db()},
        tags={"flip/model": "chest-xray", "flip/net": "net-nvflare"}, instance=instance, raise_on_error=False)


def _missing_db():  # type: ignore[no-untyped-def]
    from flip_pipelines.resources.database import QueueDatabase

    return QueueDatabase(url="sqlite:////nonexistent-folder/none.db")


def _evaluate(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name=training_failure_alert_sensor.name, dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event()).for_run_failure()
    training_failure_alert_sensor(context)


def test_a_failed_training_is_posted_with_model_net_reason_and_link(receiver: Receiver,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{receiver.server_port}/hooks/T000/B000")
    monkeypatch.setenv("FLIP_DAGSTER_UI_URL", "http://dagster.hub.example:3000/")
    with dg.instance_for_test() as instance:
        result = _failed_run(instance)
        assert not result.success
        _evaluate(instance, result)
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
        result = _failed_run(instance)
        _evaluate(instance, result)
    assert receiver.posts == []


def test_a_webhook_that_is_down_fails_the_tick_to_be_tried_again(receiver: Receiver,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.status = 503
    monkeypatch.setenv("FLIP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{receiver.server_port}/hook")
    with dg.instance_for_test() as instance:
        result = _failed_run(instance)
        with pytest.raises(dg.Failure, match="HTTP 503; will try again"):
            _evaluate(instance, result)
    assert len(receiver.posts) == 1


def test_the_alert_redacts_presigned_urls_and_keeps_one_line() -> None:
    message = failure_alert(job_name="train_model", run_id="r" * 36, model=None, net=None, run_url=None,
                            reason="download failed: https://s3/b/k?X-Amz-Signature=abcdef0123456789&X-Amz-Credential=AK\n"
                                   "  File \"x.py\", line 1")
    assert "abcdef0123456789" not in message["text"] and "File" not in message["text"]
    assert message["text"].startswith(":rotating_light: Run rrrrrrrr of train_model failed: download failed")
    assert len(message["blocks"]) == 2, "no link without FLIP_DAGSTER_UI_URL"
