"""Is a trained global model usable? The asset check on ``global_model``, as pure decisions on what the run saw:
the result archive (weights loadable, every value finite), the per-round metrics (finite) and the rounds the
model's ``config.json`` asked for."""

import io
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flip_pipelines.domain.pushes import MetricPoint

INITIAL_WEIGHTS = "initial_weights.npz"  # the persistor's starting point, kept beside the trained model


@dataclass(frozen=True)
class ResultCheck:
    problems: tuple[str, ...]
    weights: str | None  # the archive member holding the trained weights
    arrays: int
    rounds_completed: int
    rounds_configured: int | None

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        rounds = f"{self.rounds_completed} of {self.rounds_configured}" if self.rounds_configured else \
            str(self.rounds_completed)
        return f"{self.arrays} weight array(s) loaded from {self.weights}, all finite; {rounds} round(s) completed"


def configured_rounds(config: object) -> int | None:
    """The global rounds a model's parsed ``config.json`` asks for: 1 for an evaluation, None when unset (the FL
    API's default applies, which the hub does not know)."""
    if not isinstance(config, dict):
        return None
    if str(config.get("job_type", "standard")).lower() == "evaluation":
        return 1
    rounds = config.get("GLOBAL_ROUNDS")
    return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None


WeightsFinding = tuple[list[str], str | None, int]  # problems, the archive member judged, its arrays


def inspect_weights(archive: Path | str) -> WeightsFinding:
    """Load the trained weights from a result archive and find what is wrong with them. It needs numpy (12 MiB
    once imported): a run worker calls it in a short-lived process of its own, see ``assets.checks``."""
    import numpy as np

    try:
        with zipfile.ZipFile(archive) as result:
            members = [n for n in result.namelist() if n.endswith(".npz") and Path(n).name != INITIAL_WEIGHTS]
            if not members:
                return ["the result holds no trained weights (.npz)"], None, 0
            member = sorted(members, key=len)[0]
            with np.load(io.BytesIO(result.read(member)), allow_pickle=False) as weights:
                arrays = {name: weights[name] for name in weights.files}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return [f"the result cannot be loaded: {exc}"], None, 0
    broken = sorted(name for name, array in arrays.items()
                    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)))
    problems = [f"weights not finite: {', '.join(broken)}"] if broken else []
    if not arrays:
        problems.append(f"{member} holds no arrays")
    return problems, member, len(arrays)


def check_training_result(archive: Path | None, points: Sequence[MetricPoint], rounds_configured: int | None,
                          inspect: Callable[[Path], WeightsFinding] = inspect_weights) -> ResultCheck:
    """Every way a finished training's result falls short; ``archive`` None when the net's FL server keeps the
    result (FLIP's nets upload it themselves), in which case only metrics and rounds are judged."""
    problems: list[str] = []
    weights, arrays = None, 0
    if archive is not None:
        found, weights, arrays = inspect(archive)
        problems += found
    not_finite = sorted({f"{p.label} (round {p.global_round})" for p in points if not math.isfinite(p.result)})
    if not_finite:
        problems.append(f"metrics not finite: {', '.join(not_finite)}")
    completed = len({p.global_round for p in points})
    if rounds_configured is not None and completed < rounds_configured:
        problems.append(f"{completed} of {rounds_configured} configured round(s) reported metrics")
    return ResultCheck(tuple(problems), weights, arrays, completed, rounds_configured)
