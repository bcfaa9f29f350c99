"""FLIP base ServerApp for Flower (flat FAB layout: the model's modules sit next to this file).

User contract: ``models.initial_weights(config) -> dict[str, array]``; ``client_app.py`` defines a Flower
``ClientApp`` named ``app`` whose train replies carry ``arrays`` and ``metrics`` (with ``num-examples``).
Any client error fails the run (Flower's own FedAvg would finish "completed" with zero results). The final
global weights are saved to the run config's ``output-path`` as ``.npz`` (names from ``initial_weights``).
Run config ``flip-job-type = "evaluation"`` runs one round of federated evaluation instead of training.
"""

import json
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

import models  # the model owner's models.py, at the FAB root

class StrictFedAvg(FedAvg):
    """FedAvg that fails the run when any ClientApp reply carries an error."""

    @staticmethod
    def _raise_on_errors(server_round, replies):
        replies = list(replies)
        errors = [m.error.reason for m in replies if m.has_error()]
        if errors:
            raise RuntimeError(f"round {server_round}: {len(errors)} client error(s): {errors[0]}")
        return replies

    def aggregate_train(self, server_round, replies):
        return super().aggregate_train(server_round, self._raise_on_errors(server_round, replies))

    def aggregate_evaluate(self, server_round, replies):
        return super().aggregate_evaluate(server_round, self._raise_on_errors(server_round, replies))


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    user_config = json.loads((Path(__file__).parent / "config.json").read_text())
    evaluate_only = str(context.run_config.get("flip-job-type", "standard")) == "evaluation"
    initial = models.initial_weights(user_config)
    names = list(initial)
    min_nodes = int(context.run_config["min-nodes"])
    evaluate_fraction = 1.0 if evaluate_only else float(context.run_config["fraction-evaluate"])
    strategy = StrictFedAvg(
        fraction_train=0.0 if evaluate_only else 1.0,
        fraction_evaluate=evaluate_fraction,
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
    )
    settings = {k: v for k, v in user_config.items() if isinstance(v, (int, float, str, bool))}
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([np.asarray(initial[n], dtype=np.float64) for n in names]),
        num_rounds=1 if evaluate_only else int(context.run_config["num-server-rounds"]),
        train_config=ConfigRecord(settings),
        evaluate_config=ConfigRecord(settings),
    )
    trained = result.arrays.to_numpy_ndarrays() if result.arrays else []
    # an evaluation-only run trains nothing: the model it evaluated is the result
    final = dict(zip(names, trained, strict=True)) if trained else {n: np.asarray(initial[n]) for n in names}
    output = str(context.run_config["output-path"])
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        np.savez(output, **final)
    history = {
        "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
        "evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
    }
    print("FLIP metrics:", json.dumps(history))
