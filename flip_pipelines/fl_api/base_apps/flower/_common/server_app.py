"""FLIP base ServerApp for Flower (flat FAB layout: the model's modules sit next to this file).

User contract: ``models.initial_weights(config) -> dict[str, array]``; ``client_app.py`` defines a Flower
``ClientApp`` named ``app`` whose train replies carry ``arrays`` and ``metrics`` (with ``num-examples``).
Any client error fails the run (Flower's own FedAvg would finish "completed" with zero results). The final
global weights are saved to the run config's ``output-path`` as ``.npz`` (names from ``initial_weights``).
Run config ``flip-job-type = "evaluation"`` runs one round of federated evaluation instead of training.

Every round, each client's reported metrics are appended to ``round_metrics.jsonl`` next to ``output-path`` (one
JSON line per reply: round, ``client`` as ``node-<node id>``, node_id, phase, time, metrics), so the FL API, which
runs beside the SuperLink, can serve them while the run is live and name the nodes by site.
"""

import json
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

import models  # the model owner's models.py, at the FAB root

METRICS_FILE = "round_metrics.jsonl"  # the FL API looks for this name next to output-path


class StrictFedAvg(FedAvg):
    """FedAvg that fails the run when any ClientApp reply carries an error, and records each reply's metrics
    (to ``metrics_path``, when given) as soon as the round's replies are in, before aggregating them."""

    def __init__(self, *args, metrics_path=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.metrics_path = metrics_path

    def _record_metrics(self, phase, server_round, replies):
        if self.metrics_path is None:
            return
        lines = []
        for reply in replies:
            if reply.has_error():
                continue
            metrics = {}
            for record in reply.content.metric_records.values():
                metrics.update(record)
            node_id = int(reply.metadata.src_node_id)
            entry = {"round": server_round, "client": f"node-{node_id}", "node_id": node_id, "phase": phase,
                     "time": time.time(), "metrics": metrics}
            lines.append(json.dumps(entry, default=str) + "\n")
        try:  # one write per round: a reader sees whole lines; metrics must never fail the training
            with open(self.metrics_path, "a") as handle:
                handle.write("".join(lines))
        except OSError as exc:
            print(f"FLIP metrics of round {server_round} not recorded: {exc}")

    @staticmethod
    def _raise_on_errors(server_round, replies):
        replies = list(replies)
        errors = [m.error.reason for m in replies if m.has_error()]
        if errors:
            raise RuntimeError(f"round {server_round}: {len(errors)} client error(s): {errors[0]}")
        return replies

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self._record_metrics("train", server_round, replies)
        return super().aggregate_train(server_round, self._raise_on_errors(server_round, replies))

    def aggregate_evaluate(self, server_round, replies):
        replies = list(replies)
        self._record_metrics("evaluate", server_round, replies)
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
    output = str(context.run_config["output-path"])
    metrics_path = Path(output).parent / METRICS_FILE if output else None
    if metrics_path is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")  # this run's file, empty until the first round ends
    strategy = StrictFedAvg(
        fraction_train=0.0 if evaluate_only else 1.0,
        fraction_evaluate=evaluate_fraction,
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
        metrics_path=metrics_path,
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
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        np.savez(output, **final)
    history = {
        "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
        "evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
    }
    print("FLIP metrics:", json.dumps(history))
