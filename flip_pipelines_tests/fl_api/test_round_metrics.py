"""The shared JSONL → points logic of ``/job_metrics``, on the lines both base applications write."""

import json
import math

from flip_pipelines.fl_api.metrics import parse_round_metrics, rename_clients
from flip_pipelines.fl_api.schemas import RoundMetric


def line(**record: object) -> str:
    return json.dumps(record)


NVFLARE = "\n".join([
    line(round=0, client="site-1", time=1.0, metrics={"val_loss": 0.69, "val_accuracy": 0.5, "train_loss": 0.6}),
    line(round=0, client="site-2", time=1.1, metrics={"val_loss": 0.7}),
    line(round=1, client="site-1", time=2.0, metrics={"val_loss": 0.5}),
]) + "\n"

FLOWER = "\n".join([
    line(round=1, client="node-111", node_id=111, phase="train", metrics={"num-examples": 400, "val_loss": 0.69}),
    line(round=1, client="node-222", node_id=222, phase="train", metrics={"val_loss": 0.71}),
]) + "\n"


def test_nvflare_rounds_count_from_one_one_point_per_metric_in_arrival_order() -> None:
    points = parse_round_metrics(NVFLARE, first_round=0)
    assert points == [
        RoundMetric(round=1, client="site-1", label="val_loss", value=0.69),
        RoundMetric(round=1, client="site-1", label="val_accuracy", value=0.5),
        RoundMetric(round=1, client="site-1", label="train_loss", value=0.6),
        RoundMetric(round=1, client="site-2", label="val_loss", value=0.7),
        RoundMetric(round=2, client="site-1", label="val_loss", value=0.5),
    ]


def test_flower_node_ids_are_named_by_site_where_known() -> None:
    points = parse_round_metrics(FLOWER, client_names={"node-111": "site-1"})
    assert [(p.round, p.client, p.label, p.value) for p in points] == [
        (1, "site-1", "num-examples", 400.0), (1, "site-1", "val_loss", 0.69), (1, "node-222", "val_loss", 0.71),
    ]


def test_nothing_yet_is_an_empty_list() -> None:
    assert parse_round_metrics("") == []
    assert parse_round_metrics("\n\n") == []


def test_a_half_written_last_line_and_junk_lines_are_skipped() -> None:
    whole = line(round=1, client="site-1", metrics={"val_loss": 0.5})
    text = "\n".join(["not json", "[1, 2]", "42", whole, whole[: len(whole) // 2]])
    assert parse_round_metrics(text) == [RoundMetric(round=1, client="site-1", label="val_loss", value=0.5)]


def test_values_that_are_not_finite_numbers_are_dropped() -> None:
    metrics = {"ok": 1, "text": "0.5", "flag": True, "series": [0.1, 0.2], "none": None, "nested": {"a": 1},
               "nan": math.nan, "inf": math.inf}
    points = parse_round_metrics(line(round=1, client="site-1", metrics=metrics))  # json writes NaN/Infinity
    assert points == [RoundMetric(round=1, client="site-1", label="ok", value=1.0)]
    assert json.dumps([p.model_dump() for p in points], allow_nan=False)  # the API can always send them


def test_records_without_round_client_or_metrics_are_skipped() -> None:
    text = "\n".join([
        line(client="site-1", metrics={"a": 1}),
        line(round=None, client="site-1", metrics={"a": 1}),
        line(round=True, client="site-1", metrics={"a": 1}),
        line(round="1", client="site-1", metrics={"a": 1}),
        line(round=1, client=None, metrics={"a": 1}),
        line(round=1, client="", metrics={"a": 1}),
        line(round=1, client="site-1", metrics=[1, 2]),
        line(round=1, client="site-1"),
    ])
    assert parse_round_metrics(text) == []


def test_rename_clients_names_known_nodes_and_keeps_everything_else() -> None:
    renamed = rename_clients(FLOWER + "junk\n", {"node-111": "site-1"})
    lines = renamed.splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[1])
    assert first["client"] == "site-1" and first["node_id"] == 111 and first["metrics"]["val_loss"] == 0.69
    assert second["client"] == "node-222"
    assert lines[2] == "junk" and renamed.endswith("\n")
    assert rename_clients("", {"node-1": "site-1"}) == ""
