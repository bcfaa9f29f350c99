"""The model's ``config.json`` as the FL API accepts it: FLIP's rules (``domain.model_config``) or a 400."""

from typing import Any

from flip_pipelines.domain.model_config import model_config_problems, with_default_rounds
from flip_pipelines.fl_api.errors import BadRequestError


def validate_model_config(config: Any, *, default_rounds: int) -> dict[str, Any]:
    """The model's ``config.json`` with rounds defaulted; raises BadRequestError naming every problem."""
    problems = model_config_problems(config)
    if problems:
        raise BadRequestError("; ".join(problems))
    return with_default_rounds(config, default_rounds)
