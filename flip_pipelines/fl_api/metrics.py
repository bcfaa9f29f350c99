"""Per-round training metrics: the JSONL file both base applications append to, read back as the API's points.

The NVFlare aggregator (``flip_aggregator.py``) and the Flower ServerApp (``server_app.py``) append one JSON object
per client reply per round, as the replies arrive, so the file can be read while the job runs::

    {"round": 0, "client": "site-1", "time": 1795334009.4, "metrics": {"val_loss": 0.69, "train_loss": 0.52}}

Flower writes ``"client": "node-<node id>"`` (its ServerApp cannot know site names) plus ``node_id`` and ``phase``;
the FL API maps node ids to site names when it reads. NVFlare counts rounds from 0 and Flower from 1; the API's
points count from 1 on both, so charts and FLIP's ``fl_metrics.global_round`` line up across backends.

The file is read while a writer may be mid-line, and model owners put whatever they like in their metrics, so
parsing never fails: unreadable lines, records without a round or client, and values that are not finite numbers
(strings, booleans, lists, NaN) are skipped.
"""

import json
import math
from collections.abc import Mapping
from typing import Any

from flip_pipelines.fl_api.schemas import RoundMetric

METRICS_FILE = "round_metrics.jsonl"


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line still being written, or not JSON at all
        return None
    return record if isinstance(record, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def parse_round_metrics(
    text: str, *, first_round: int = 1, client_names: Mapping[str, str] | None = None
) -> list[RoundMetric]:
    """One point per numeric metric per record, in file (arrival) order.

    Args:
        text: the JSONL file's content (possibly with a half-written last line).
        first_round: the round number the backend gives its first round (NVFlare 0, Flower 1); points count from 1.
        client_names: renames recorded clients (Flower's ``node-<id>``) to FL client names; others are kept.
    """
    names = client_names or {}
    points: list[RoundMetric] = []
    for line in text.splitlines():
        record = _record(line)
        if record is None:
            continue
        raw_round, client, metrics = record.get("round"), record.get("client"), record.get("metrics")
        if isinstance(raw_round, bool) or not isinstance(raw_round, int) or client in (None, ""):
            continue
        if not isinstance(metrics, dict):
            continue
        client_name = names.get(str(client), str(client))
        for label, value in metrics.items():
            number = _number(value)
            if number is not None:
                points.append(
                    RoundMetric(round=raw_round - first_round + 1, client=client_name, label=str(label), value=number)
                )
    return points


def rename_clients(text: str, client_names: Mapping[str, str]) -> str:
    """The JSONL with each record's ``client`` renamed through ``client_names`` (other fields and lines unchanged),
    so a downloaded result names FL clients as the API does."""
    lines = []
    for line in text.splitlines():
        record = _record(line)
        if record is not None and str(record.get("client")) in client_names:
            record["client"] = client_names[str(record["client"])]
            line = json.dumps(record)
        lines.append(line)
    return "".join(f"{line}\n" for line in lines)
