"""The model's ``config.json`` as every backend reads it (FLIP's rules)."""

from typing import Any

from flip_pipelines.fl_api.errors import BadRequestError

AGGREGATORS = {"InTimeAccumulateWeightedAggregator", "AccumulateWeightedAggregator"}
MAX_ROUNDS = 1000


def validate_model_config(config: Any, *, default_rounds: int) -> dict[str, Any]:
    """The model's ``config.json`` with rounds defaulted; raises BadRequestError naming what is wrong."""
    if not isinstance(config, dict):
        raise BadRequestError("config.json must hold a JSON object")
    checked = dict(config)
    for key in ("LOCAL_ROUNDS", "GLOBAL_ROUNDS"):
        value = checked.setdefault(key, default_rounds)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ROUNDS:
            raise BadRequestError(f"config.json {key} must be a whole number from 1 to {MAX_ROUNDS}, not {value!r}")
    aggregator = checked.get("AGGREGATOR")
    if aggregator is not None and aggregator not in AGGREGATORS:
        raise BadRequestError(f"config.json AGGREGATOR must be one of {sorted(AGGREGATORS)}, not {aggregator!r}")
    if not isinstance(checked.get("IGNORE_RESULT_ERROR", False), bool):
        raise BadRequestError("config.json IGNORE_RESULT_ERROR must be true or false")
    return checked
