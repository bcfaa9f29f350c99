import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flip_pipelines.domain.pushes import MetricPoint
from flip_pipelines.domain.result_check import check_training_result, configured_rounds


def _archive(tmp_path: Path, members: dict[str, dict[str, np.ndarray] | bytes]) -> Path:
    path = tmp_path / "result.zip"
    with zipfile.ZipFile(path, "w") as out:
        for name, content in members.items():
            if isinstance(content, bytes):
                out.writestr(name, content)
            else:
                buffer = io.BytesIO()
                np.savez(buffer, **content)
                out.writestr(name, buffer.getvalue())
    return path


def _points(rounds: int, value: float = 0.5) -> list[MetricPoint]:
    return [MetricPoint(client, r, "val_loss", value, "Global Round", r)
            for r in range(1, rounds + 1) for client in ("site-1", "site-2")]


def test_a_loadable_finite_result_with_every_round_passes(tmp_path: Path) -> None:
    archive = _archive(tmp_path, {"workspace/models/initial_weights.npz": {"w": np.zeros(2)},
                                  "workspace/models/global.npz": {"w": np.ones(3), "b": np.ones(1)}})
    result = check_training_result(archive, _points(2), rounds_configured=2)
    assert result.passed, result.problems
    assert (result.weights, result.arrays, result.rounds_completed) == ("workspace/models/global.npz", 2, 2)


@pytest.mark.parametrize(("members", "problem"), [
    ({"log.txt": b"no weights"}, "the result holds no trained weights (.npz)"),
    ({"global.npz": {"w": np.array([1.0, math.nan])}}, "weights not finite: w"),
    ({"global.npz": b"not a numpy file"}, "the result cannot be loaded"),
])
def test_a_result_without_usable_weights_fails(tmp_path: Path, members: dict, problem: str) -> None:
    result = check_training_result(_archive(tmp_path, members), _points(1), rounds_configured=1)
    assert not result.passed and result.problems[0].startswith(problem)


def test_missing_rounds_and_non_finite_metrics_fail_even_without_an_archive() -> None:
    points = [*_points(1), MetricPoint("site-1", 1, "val_accuracy", math.inf, "Global Round", 1)]
    result = check_training_result(None, points, rounds_configured=3)
    assert result.problems == ("metrics not finite: val_accuracy (round 1)",
                               "1 of 3 configured round(s) reported metrics")


@pytest.mark.parametrize(("config", "rounds"), [
    ({"GLOBAL_ROUNDS": 4}, 4), ({"job_type": "evaluation", "GLOBAL_ROUNDS": 4}, 1), ({}, None), (None, None),
    ({"GLOBAL_ROUNDS": True}, None),
])
def test_configured_rounds_follow_config_json(config: object, rounds: int | None) -> None:
    assert configured_rounds(config) == rounds


def test_the_run_worker_inspects_weights_in_a_process_of_its_own(tmp_path: Path) -> None:
    """The asset check's path: the same findings as in-process, from a spawned process (numpy stays out of the
    run worker), for a good and a broken result."""
    from flip_pipelines.assets.checks import inspect_weights_apart
    from flip_pipelines.domain.result_check import inspect_weights

    for name in ("good", "bad"):
        (tmp_path / name).mkdir()
    good = _archive(tmp_path / "good", {"m/global.npz": {"w": np.ones(3)}})
    bad = _archive(tmp_path / "bad", {"m/global.npz": {"w": np.array([1.0, math.nan])}})
    assert inspect_weights_apart(good) == inspect_weights(good) == ([], "m/global.npz", 1)
    assert inspect_weights_apart(bad) == inspect_weights(bad) == (["weights not finite: w"], "m/global.npz", 1)
