"""The model's ``config.json`` as every backend reads it (FLIP's rules), without I/O."""

from typing import Any

AGGREGATORS = frozenset({"InTimeAccumulateWeightedAggregator", "AccumulateWeightedAggregator"})
MAX_ROUNDS = 1000


def model_config_problems(config: Any) -> list[str]:
    """Every way ``config`` (the parsed ``config.json``) breaks FLIP's rules; empty when it is fine.

    Unset rounds are allowed: the FL API fills them with its default."""
    if not isinstance(config, dict):
        return ["config.json must hold a JSON object"]
    problems = []
    for key in ("LOCAL_ROUNDS", "GLOBAL_ROUNDS"):
        value = config.get(key)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value is not None and not (whole and 1 <= value <= MAX_ROUNDS):
            problems.append(f"config.json {key} must be a whole number from 1 to {MAX_ROUNDS}, not {value!r}")
    aggregator = config.get("AGGREGATOR")
    if aggregator is not None and aggregator not in AGGREGATORS:
        problems.append(f"config.json AGGREGATOR must be one of {sorted(AGGREGATORS)}, not {aggregator!r}")
    if not isinstance(config.get("IGNORE_RESULT_ERROR", False), bool):
        problems.append("config.json IGNORE_RESULT_ERROR must be true or false")
    return problems


def with_default_rounds(config: dict[str, Any], default_rounds: int) -> dict[str, Any]:
    """``config`` with unset ``LOCAL_ROUNDS``/``GLOBAL_ROUNDS`` filled in."""
    filled = dict(config)
    for key in ("LOCAL_ROUNDS", "GLOBAL_ROUNDS"):
        if filled.get(key) is None:
            filled[key] = default_rounds
    return filled
