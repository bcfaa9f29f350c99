"""FLIP's NVFlare FL API's upload, after the downloads: the job folder on disk configured as FLIP configures it
(fl-services/nvflare/fl-api-base ``utils/upload.py`` ``upload_application`` and ``utils/prepare_config.py``).

Per app folder, in FLIP's order: ``custom/config.json`` read and validated (rounds 1..1000, known aggregator,
weights 0..1), missing rounds written into it; ``config_fed_client.json`` given ``project_id`` and ``query``;
``config_fed_server.json`` given ``model_id``, ``global_rounds``, ``min_clients`` and, in its workflows and its
aggregator component, only the keys FLIP rewrites there; ``config/environment.json`` written; for ``app`` alone,
``meta.json`` written. What this leaves out of FLIP's upload: GPU resource specs (always none here), the
AGGREGATE_ONLY_REGEX filters and BEST_MODEL_METRIC selector, server checkpoints, and the https-only URL rule.
"""

import json
from pathlib import Path
from typing import Any

TRAINING_ROUND_MIN, TRAINING_ROUND_MAX = 1, 1000
AGGREGATORS = ("InTimeAccumulateWeightedAggregator", "AccumulateWeightedAggregator")
CHECKPOINT_DIR_KEY = "APP_CKPT_DIR"  # nvflare EnvironmentKey.CHECKPOINT_DIR


def _read(path: Path) -> Any:
    with open(path) as handle:  # FLIP's read_config: a missing file is its FileNotFoundError, a 404
        return json.load(handle)


def _write(data: Any, path: Path) -> None:
    path.write_text(json.dumps(data, indent=4))


def _validated(config: Any) -> dict[str, Any]:
    """FLIP's ``validate_config``: the overridable keys it accepts (invalid rounds are dropped, not refused)."""
    if not isinstance(config, dict):
        raise ValueError("Provided config is not a valid dictionary")

    def is_round(value: object) -> bool:
        return isinstance(value, (int, float)) and TRAINING_ROUND_MIN <= value <= TRAINING_ROUND_MAX

    validated: dict[str, Any] = {k: config[k] for k in ("LOCAL_ROUNDS", "GLOBAL_ROUNDS") if is_round(config.get(k))}
    if isinstance(config.get("IGNORE_RESULT_ERROR"), bool):
        validated["IGNORE_RESULT_ERROR"] = config["IGNORE_RESULT_ERROR"]
    if aggregator := config.get("AGGREGATOR"):
        if aggregator not in AGGREGATORS:
            raise ValueError(f"Unknown aggregator: {aggregator}")
        validated["AGGREGATOR"] = aggregator
    if weights := config.get("AGGREGATION_WEIGHTS"):
        if not isinstance(weights, dict):
            raise ValueError("AGGREGATION_WEIGHTS must be a dictionary")
        for value in weights.values():
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"Invalid weight: {value}")
        validated["AGGREGATION_WEIGHTS"] = weights
    return validated


def _configure_config(app_dir: Path, global_rounds: float, local_rounds: float) -> None:
    """FLIP's ``configure_config``: LOCAL_ROUNDS / GLOBAL_ROUNDS written into ``custom/config.json`` when absent."""
    path = app_dir / "custom" / "config.json"
    user = _read(path)
    updated = dict(user)
    local_keys = [k for k in user if k.startswith("LOCAL_ROUNDS")]
    if not local_keys:
        updated["LOCAL_ROUNDS"] = local_rounds
    if len(local_keys) == 1 and local_keys[0] != "LOCAL_ROUNDS":
        raise ValueError(f"config.json has encountered 1 local rounds key ({local_keys[0]}). When only 1 local "
                         "rounds key is present, it must be called LOCAL_ROUNDS.")
    if len(local_keys) <= 1 and "GLOBAL_ROUNDS" not in user:
        updated["GLOBAL_ROUNDS"] = global_rounds
    for key in local_keys if len(local_keys) > 1 else []:
        stage = key.split("LOCAL_ROUNDS_")[1] if key != "LOCAL_ROUNDS" else None
        if stage is not None and f"GLOBAL_ROUNDS_{stage}" not in user:
            raise ValueError(f"config.json has encountered LOCAL_ROUNDS for stage_keyword='{stage}' but not the "
                             "equivalent GLOBAL_ROUNDS.")
    if updated != user:
        _write(updated, path)


def _configure_client(app_dir: Path, model_id: str, project_id: str, cohort_query: str) -> None:
    path = app_dir / "config" / "config_fed_client.json"
    if not path.is_file():
        raise FileNotFoundError(f"No config_fed_client.json found in app '{model_id}'")
    config = _read(path)
    config["project_id"], config["query"] = project_id, cohort_query
    _write(config, path)


def _configure_server(app_dir: Path, model_id: str, global_rounds: float, trusts: list[str],
                      ignore_result_error: bool, aggregator: str, aggregation_weights: dict[str, float]) -> None:
    """FLIP's ``configure_server``: a ``"{global_rounds}"`` placeholder in a workflow takes the model's rounds; a
    ``"{num_rounds}"`` one keeps the template's top-level ``num_rounds`` (FLIP never writes that key); a literal
    ``num_rounds`` is overwritten."""
    path = app_dir / "config" / "config_fed_server.json"
    if not path.is_file():
        raise FileNotFoundError(f"No config_fed_server.json found in app '{model_id}'")
    config = _read(path)
    config["model_id"], config["global_rounds"], config["min_clients"] = model_id, global_rounds, len(trusts)
    for workflow in config["workflows"]:
        args = workflow.get("args")
        if args is None:
            continue
        if "participating_clients" in args:
            args["participating_clients"] = trusts
        if "ignore_result_error" in args:
            args["ignore_result_error"] = ignore_result_error
        if "num_rounds" in args and not isinstance(args["num_rounds"], str):
            args["num_rounds"] = global_rounds
        if "min_clients" in args and not isinstance(args["min_clients"], str):
            args["min_clients"] = len(trusts)
    for component in config["components"]:
        if "aggregator" in component.get("name", "") or "aggregator" in component.get("id", ""):
            component["name"] = aggregator
            component["args"]["aggregation_weights"] = aggregation_weights
    _write(config, path)


def _configure_meta(job_dir: Path, model_id: str, trusts: list[str]) -> None:
    _write({"name": model_id, "resource_spec": {}, "deploy_map": {"app": ["server", *trusts]},
            "min_clients": len(trusts), "mandatory_clients": trusts, "custom_props": {"model_id": model_id}},
           job_dir / "meta.json")


def configure_job_folder(job_dir: Path, model_id: str, app_folders: set[str], project_id: str, cohort_query: str,
                         trusts: list[str]) -> None:
    """Configure the downloaded job folder ``job_dir`` in place, as FLIP's upload does.

    Raises:
        FileNotFoundError: several app folders and no ``meta.json``, or an app folder without ``custom/config.json``
            or one of its FL configs (FLIP answers 404).
        ValueError: an invalid ``config.json`` (FLIP answers 400).
    """
    if len(app_folders) > 1 and not (job_dir / "meta.json").exists():
        raise FileNotFoundError("Application must contain a meta.json file in the root of the application folder "
                                "if you have multiple app sub-folders indicating different behaviors per site.")
    for app in sorted(app_folders):
        app_dir = job_dir / app
        config = _validated(_read(app_dir / "custom" / "config.json"))
        global_rounds = config.get("GLOBAL_ROUNDS") or TRAINING_ROUND_MIN
        _configure_config(app_dir, global_rounds, config.get("LOCAL_ROUNDS") or TRAINING_ROUND_MIN)
        _configure_client(app_dir, model_id, project_id, cohort_query)
        _configure_server(app_dir, model_id, global_rounds, trusts, config.get("IGNORE_RESULT_ERROR", False),
                          config.get("AGGREGATOR", AGGREGATORS[0]), config.get("AGGREGATION_WEIGHTS", {}))
        _write({CHECKPOINT_DIR_KEY: "model"}, app_dir / "config" / "environment.json")
        if app == "app":
            _configure_meta(job_dir, model_id, trusts)
