import json
import uuid
from datetime import UTC, datetime, timedelta

from flip_pipelines.domain.uploaded_results import (
    StoredObject,
    finished_without_pushed_status,
    flip_components_warning,
    missing_flip_components,
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


def _server_config(*classes: str, handler_args: dict | None = None) -> bytes:
    components = [{"id": "persistor", "path": "flip_persistor.FlipModelPersistor", "args": {}}]
    for name in classes:
        if name == "ServerEventHandler":
            components.append({"id": "flip_server_event_handler", "path": "flip.nvflare.components.ServerEventHandler",
                               "args": handler_args or {"model_id": "{model_id}"}})
        else:  # FLIP's older templates name the module too
            components.append({"id": "persist_and_cleanup", "name": name, "args": {}})
    return json.dumps({"format_version": 2, "components": components}).encode()


def test_a_job_hands_back_its_result_only_when_its_server_config_declares_flips_two_components() -> None:
    """FLIP's FL server uploads and pushes through job components: ``ServerEventHandler``, which calls the
    ``PersistToS3AndCleanup`` its ``persist_and_cleanup_id`` names. What a server config lacks of them is named."""
    both = _server_config("ServerEventHandler", "PersistToS3AndCleanup")
    assert missing_flip_components({"app/config/config_fed_server.json": both}) == ()
    assert missing_flip_components({"app/config/config_fed_server.json": _server_config()}) == (
        "ServerEventHandler", "PersistToS3AndCleanup")
    assert missing_flip_components({"app/config/config_fed_server.json": _server_config("ServerEventHandler")}) == (
        "PersistToS3AndCleanup",)
    assert missing_flip_components({"app/config/config_fed_server.json": _server_config(
        "ServerEventHandler", "PersistToS3AndCleanup", handler_args={"persist_and_cleanup_id": "other"})}) == (
        "PersistToS3AndCleanup",), "the handler calls the component its persist_and_cleanup_id names"
    assert missing_flip_components({}) == ("ServerEventHandler", "PersistToS3AndCleanup"), "no server config"
    assert missing_flip_components({"app/config/config_fed_server.json": b"{not json"}) == (
        "ServerEventHandler", "PersistToS3AndCleanup")
    warning = flip_components_warning("net-flip", "package", ("ServerEventHandler", "PersistToS3AndCleanup"))
    assert warning == (
        "the base application from package declares neither ServerEventHandler nor PersistToS3AndCleanup (FLIP's "
        "flip package) in its server config: net net-flip's FL server, which hands results back through them, will "
        "upload no result and push no status, and the training will end as an ERROR once "
        "FLIP_PUSHED_STATUS_GRACE_SECONDS have passed after its FL job; point the net at FLIP's job templates "
        "(FLIP_NET_OPTIONS base_app_source)")
    assert flip_components_warning("n", "s3://b/p", ("PersistToS3AndCleanup",)).startswith(
        "the base application from s3://b/p declares no PersistToS3AndCleanup (FLIP's flip package) in its server "
        "config: net n's FL server")
