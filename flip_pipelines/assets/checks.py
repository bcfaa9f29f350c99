"""The asset check on the global model: result present and loadable, metrics finite, rounds as configured.

A training run evaluates it as soon as it stored the result (``evaluate_global_model``); the same check can be
executed again from the UI for a model's partition, on the result its latest materialization points at.
"""

import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import dagster as dg

from flip_pipelines.assets.training import GLOBAL_MODEL, MODEL_PARTITIONS
from flip_pipelines.db import lifecycle, pushes
from flip_pipelines.domain.model_check import read_model_config
from flip_pipelines.domain.result_check import (
    ResultCheck,
    WeightsFinding,
    check_training_result,
    configured_rounds,
)
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.storage import FlipStorage

CHECK_NAME = "global_model_is_usable"


def inspect_weights_apart(archive: Path) -> WeightsFinding:
    """``inspect_weights`` in a new process: the run worker never imports numpy, nor keeps the weights' memory,
    so it stays at its training size (bench_dispatch --modes rss: the check raised its peak by ~12 MiB)."""
    code = ("import json, sys; from flip_pipelines.domain.result_check import inspect_weights; "
            "print(json.dumps(inspect_weights(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(archive)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return [f"the result could not be inspected: {last}"], None, 0
    problems, member, arrays = json.loads(done.stdout)
    return list(problems), member, int(arrays)


def evaluate_global_model(queue_db: QueueDatabase, storage: FlipStorage, model_id: uuid.UUID,
                          fl_job_id: uuid.UUID, archive: Path | None) -> ResultCheck:
    """Judge one training's result: ``archive`` is the downloaded result (None when the net's FL server keeps it);
    the metrics are those recorded since the training started; the rounds are the model's ``config.json``'s."""
    with queue_db.session() as session:
        started = lifecycle.get_job(session, fl_job_id).started
        points = pushes.model_metrics(session, model_id, since=started)
    store = storage.bundle_store()
    config, _ = read_model_config(store.config_bytes(str(model_id), store.model_files(str(model_id))))
    return check_training_result(archive, points, configured_rounds(config), inspect=inspect_weights_apart)


def check_evaluation(result: ResultCheck, partition: str) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=GLOBAL_MODEL.key, check_name=CHECK_NAME, passed=result.passed, partition=partition,
        description=result.summary(), metadata=_check_metadata(result),
    )


def _check_metadata(result: ResultCheck) -> dict[str, object]:
    metadata: dict[str, object] = {"rounds_completed": result.rounds_completed, "weight_arrays": result.arrays}
    if result.rounds_configured is not None:
        metadata["rounds_configured"] = result.rounds_configured
    if result.problems:
        metadata["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in result.problems))
    return metadata


@dg.asset_check(asset=GLOBAL_MODEL.key, name=CHECK_NAME, partitions_def=MODEL_PARTITIONS,
                description="The global model's result is present and loadable (weights finite), its per-round "
                            "metrics are finite, and it completed the rounds its config.json asked for.")
def global_model_is_usable(context: dg.AssetCheckExecutionContext, queue_db: QueueDatabase,
                           storage: FlipStorage) -> dg.AssetCheckResult:
    partition = context.partition_key
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=GLOBAL_MODEL.key, asset_partitions=[partition]), limit=1, ascending=False,
    ).records
    if not records:
        return dg.AssetCheckResult(passed=False, description=f"{partition} has no global model yet")
    metadata = records[0].asset_materialization.metadata if records[0].asset_materialization else {}
    location = str(metadata["location"].value) if "location" in metadata else ""
    model_id, fl_job_id = (uuid.UUID(str(metadata[k].value)) for k in ("model_id", "fl_job_id"))
    with tempfile.TemporaryDirectory() as tmp:
        archive = None
        if location.startswith("s3://"):
            bucket, key = location.removeprefix("s3://").split("/", 1)
            archive = Path(tmp) / "result.zip"
            storage.s3.get_client().download_file(bucket, key, str(archive))
        result = evaluate_global_model(queue_db, storage, model_id, fl_job_id, archive)
    return dg.AssetCheckResult(passed=result.passed, description=result.summary(),
                               metadata=_check_metadata(result))
