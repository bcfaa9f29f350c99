"""Client-side executor for FLIP base applications: runs the model owner's code on the site's data.

User contract (files uploaded with the model, placed next to this file):
- ``trainer.py``: ``train(weights, context) -> (new_weights, num_samples, metrics)``
- ``validator.py``: ``validate(weights, context) -> metrics`` (run on the received global weights)
- ``evaluator.py`` (evaluation jobs): ``evaluate(weights, context) -> metrics``
- ``models.py``: ``initial_weights(config) -> dict[str, array]`` (used by the server)
- ``config.json``: the model's settings (``LOCAL_ROUNDS``, ``GLOBAL_ROUNDS``, ``job_type``, anything else)
``weights`` is a dict of name → numpy array; ``metrics`` a dict of name → float; ``context`` a ``FlipContext``.
"""

import importlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants


@dataclass
class FlipContext:
    site_name: str
    project_id: str
    cohort_query: str
    current_round: int
    total_rounds: int
    config: dict = field(default_factory=dict)
    abort_signal: object = None

    def should_stop(self) -> bool:
        return bool(self.abort_signal is not None and self.abort_signal.triggered)


def _load_config() -> dict:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json")) as handle:
        return json.load(handle)


def _floats(metrics: dict) -> dict:
    return {str(k): float(v) for k, v in (metrics or {}).items()}


class FlipExecutor(Executor):
    def __init__(self, mode: str = "train", project_id: str = "", cohort_query: str = ""):
        super().__init__()
        if mode not in ("train", "evaluate"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.project_id = project_id
        self.cohort_query = cohort_query

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        if abort_signal.triggered:
            return make_reply(ReturnCode.TASK_ABORTED)
        dxo = from_shareable(shareable)
        weights = {k: np.asarray(v) for k, v in dxo.data.items()}
        context = FlipContext(
            site_name=fl_ctx.get_identity_name(),
            project_id=self.project_id,
            cohort_query=self.cohort_query,
            current_round=int(shareable.get_header(AppConstants.CURRENT_ROUND) or 0),
            total_rounds=int(shareable.get_header(AppConstants.NUM_ROUNDS) or 1),
            config=_load_config(),
            abort_signal=abort_signal,
        )
        if self.mode == "evaluate":
            metrics = _floats(importlib.import_module("evaluator").evaluate(weights, context))
            new_weights, num_samples = weights, 1
        else:
            metrics = _floats(importlib.import_module("validator").validate(weights, context))
            new_weights, num_samples, train_metrics = importlib.import_module("trainer").train(weights, context)
            metrics.update({f"train_{k}": v for k, v in _floats(train_metrics).items()})
        if abort_signal.triggered:
            return make_reply(ReturnCode.TASK_ABORTED)
        self.log_info(fl_ctx, f"round {context.current_round} {self.mode} metrics: {metrics}")
        out = DXO(data_kind=DataKind.WEIGHTS, data={k: np.asarray(v) for k, v in new_weights.items()})
        out.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, int(num_samples))
        out.set_meta_prop("flip_metrics", metrics)
        return out.to_shareable()
