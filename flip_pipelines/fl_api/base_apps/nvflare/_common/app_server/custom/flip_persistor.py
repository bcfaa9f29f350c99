"""Server-side model persistence for FLIP base applications.

The initial global weights come from the model owner's code (``models.initial_weights(config)``, or
``evaluator.initial_weights(config)`` for evaluation jobs); after every round the global weights are written to
``<run dir>/models/global_weights.npz``, which the downloadable job result carries.
"""

import importlib
import json
import os

import numpy as np
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor


def _custom_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def load_user_config() -> dict:
    with open(os.path.join(_custom_dir(), "config.json")) as handle:
        return json.load(handle)


def _initial_weights(config: dict) -> dict:
    for module_name in ("models", "evaluator"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        if hasattr(module, "initial_weights"):
            weights = module.initial_weights(config)
            return {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    raise RuntimeError("the model defines no initial_weights(config) in models.py (or evaluator.py)")


class FlipModelPersistor(ModelPersistor):
    def __init__(self, filename: str = "global_weights.npz"):
        super().__init__()
        self.filename = filename

    def _path(self, fl_ctx: FLContext) -> str:
        run_dir = fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id())
        models_dir = os.path.join(run_dir, "models")
        os.makedirs(models_dir, exist_ok=True)
        return os.path.join(models_dir, self.filename)

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        weights = _initial_weights(load_user_config())
        np.savez(os.path.join(os.path.dirname(self._path(fl_ctx)), "initial_weights.npz"), **weights)
        return make_model_learnable(weights, {})

    def save_model(self, model_learnable: ModelLearnable, fl_ctx: FLContext) -> None:
        weights = model_learnable["weights"]
        np.savez(self._path(fl_ctx), **{k: np.asarray(v) for k, v in weights.items()})
