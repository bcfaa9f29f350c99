"""A claimed job's ``train_model`` run, as data: its run key, config and tags.

Two launchers build the same run: the queue sensor (a ``RunRequest``) and ``flip-pipelines enqueue`` (Dagster's
GraphQL ``launchRun``, when the local Dagster UI is known and a net is free). Defined once here, without importing
Dagster, so the CLI stays quick to start and both runs look the same to reconciliation (it finds a job's runs by
the ``flip/fl_job_id`` tag) and to people in the UI.
"""

import uuid
from typing import Any

from flip_pipelines.domain.queue import Claim

TRAIN_MODEL_JOB = "train_model"
FL_JOB_ID_TAG = "flip/fl_job_id"


def run_tags(net: str, model_id: uuid.UUID, fl_job_id: uuid.UUID, model_name: str) -> dict[str, str]:
    return {"flip/net": net, "flip/model_id": str(model_id), FL_JOB_ID_TAG: str(fl_job_id), "flip/model": model_name}


def run_key(claim: Claim) -> str:
    """One key per queued job: a job queued again after its claim was given back keeps its key, and a launcher
    that already requested a run for it does not request another."""
    return f"fl_job:{claim.fl_job_id}"


def train_model_run_config(claim: Claim) -> dict[str, Any]:
    """The run trains exactly this claim (``fl_job_id``): it never claims anything itself."""
    return {"ops": {"resolve_backend": {"config": {
        "model_id": str(claim.model_id), "fl_job_id": str(claim.fl_job_id), "net": claim.net_name}}}}
