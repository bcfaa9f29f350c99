"""Per-round metrics while a training runs: fetched from the net's FL API at each poll, logged as each round
arrives, stored as ``fl_metrics`` rows, and shown on the global model as a table and final numbers."""

import math
from collections import defaultdict

import dagster as dg

from flip_pipelines.db import lifecycle, pushes
from flip_pipelines.domain.pushes import MetricPoint
from flip_pipelines.domain.queue import Claim
from flip_pipelines.domain.retry import is_transient
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.resources.database import QueueDatabase


def follow_round_metrics(context: dg.OpExecutionContext, client: FLApiClient, claim: Claim, backend_job_id: str,
                         queue_db: QueueDatabase) -> None:
    """Record what the FL API reports beyond what is stored, and log one line per newly complete client round.
    Metrics are best effort: a passing FL API problem waits for the next poll; a lasting one is logged once."""
    try:
        reported = client.job_metrics(backend_job_id)
    except Exception as exc:
        if not is_transient(exc):
            context.log.warning(f"the FL API gives no per-round metrics for job {backend_job_id}: {exc}")
        return
    if not reported:
        return
    values = [pushes.RoundValue(m.client, m.round, m.label, m.value) for m in reported]
    with queue_db.session() as session:
        since = lifecycle.get_job(session, claim.fl_job_id).started
        recorded, unattributed = pushes.record_round_metrics(session, claim.model_id, since, values)
    trust_of = dict(zip(claim.slot_names, claim.trust_names, strict=True))
    by_round: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for value in recorded:
        by_round[value.global_round][trust_of.get(value.fl_client_name, value.fl_client_name)].append(
            f"{value.label}={value.result:.4g}")
    for number, clients in sorted(by_round.items()):
        context.log.info(f"round {number}: " + "; ".join(f"{who} {', '.join(sorted(parts))}"
                                                         for who, parts in sorted(clients.items())))
    if recorded and unattributed:
        context.log.warning(f"metrics of FL client(s) {', '.join(unattributed)} not stored: no approved trust "
                            "has that kit slot")


def metrics_metadata(queue_db: QueueDatabase, claim: Claim) -> dict[str, object]:
    """The training's metrics (``fl_metrics`` since it started): a per-round table, and each label's last-round
    mean over clients as a number, so Dagster plots it across trainings."""
    with queue_db.session() as session:
        since = lifecycle.get_job(session, claim.fl_job_id).started
        points = pushes.model_metrics(session, claim.model_id, since=since)
    if not points:
        return {}
    return {**final_metrics(points), "rounds": max(p.global_round for p in points),
            "metrics": metrics_table(points, dict(zip(claim.slot_names, claim.trust_names, strict=True)))}


def final_metrics(points: list[MetricPoint]) -> dict[str, dg.MetadataValue]:
    last = max(p.global_round for p in points)
    finals = {}
    for label in sorted({p.label for p in points}):
        values = [p.result for p in points if p.label == label and p.global_round == last]
        if values and all(math.isfinite(v) for v in values):
            finals[f"final_{label}"] = dg.MetadataValue.float(sum(values) / len(values))
    return finals


def metrics_table(points: list[MetricPoint], trust_of: dict[str, str]) -> dg.MetadataValue:
    """One row per round and client, one column per metric: what a person reads to see training converge."""
    labels = sorted({p.label for p in points})
    rows: dict[tuple[int, str], dict[str, object]] = {}
    for p in points:
        row = rows.setdefault((p.global_round, p.fl_client_name), {
            "round": p.global_round, "trust": trust_of.get(p.fl_client_name, p.fl_client_name)})
        row[p.label] = p.result if math.isfinite(p.result) else None
    columns = [dg.TableColumn("round", "int"), dg.TableColumn("trust", "string"),
               *(dg.TableColumn(label, "float") for label in labels)]
    return dg.MetadataValue.table(records=[dg.TableRecord(rows[k]) for k in sorted(rows)],
                                  schema=dg.TableSchema(columns=columns))
