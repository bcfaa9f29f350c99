"""Logistic regression ClientApp: trains on the site's synthetic data, evaluates the received global model.

The site comes from the SuperNode's node config (``site-name``). ``FAIL_ON_SITE`` in config.json makes that
site raise, to show that a client error fails the whole run.

Train replies report the received global model's ``val_loss``/``val_accuracy`` on the site's validation split and
``train_loss`` after local training: the names NVFlare's demo reports, so both backends chart the same metrics.
"""

import json
import time
from pathlib import Path

import models
import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

CONFIG = json.loads((Path(__file__).parent / "config.json").read_text())
app = ClientApp()


def _site(context: Context) -> str:
    return str(context.node_config.get("site-name", f"partition-{context.node_config.get('partition-id', 0)}"))


def _weights(msg: Message) -> dict:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    return {"w": np.array(w, dtype=float), "b": np.array(b, dtype=float)}


def _accuracy(weights: dict, x, y) -> float:
    return float(np.mean((models.predict(weights, x) > 0.5) == (y > 0.5)))


@app.train()
def train(msg: Message, context: Context) -> Message:
    site = _site(context)
    if CONFIG.get("FAIL_ON_SITE") == site:
        raise RuntimeError(f"deliberate failure on {site}")
    weights = _weights(msg)
    x_val, y_val = models.load_site_data(site, CONFIG, "validation")
    val_loss, val_accuracy = models.log_loss(weights, x_val, y_val), _accuracy(weights, x_val, y_val)
    x, y = models.load_site_data(site, CONFIG, "train")
    rate, steps = float(CONFIG.get("LEARNING_RATE", 0.2)), int(CONFIG.get("LOCAL_STEPS", 10))
    pause = float(CONFIG.get("STEP_SLEEP_SECONDS", 0))
    for _ in range(steps):
        if pause:
            time.sleep(pause)
        error = models.predict(weights, x) - y
        weights["w"] -= rate * x.T @ error / len(y)
        weights["b"] -= rate * np.array([error.mean()])
    metrics = {"num-examples": len(y), "train_loss": models.log_loss(weights, x, y), "val_loss": val_loss,
               "val_accuracy": val_accuracy}
    reply = RecordDict({"arrays": ArrayRecord([weights["w"], weights["b"]]), "metrics": MetricRecord(metrics)})
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    weights = _weights(msg)
    x, y = models.load_site_data(_site(context), CONFIG, "validation")
    metrics = {"num-examples": len(y), "val_loss": models.log_loss(weights, x, y),
               "val_accuracy": _accuracy(weights, x, y)}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


