"""Full-batch gradient descent on the site's training split."""

import time

import models
import numpy as np


def train(weights: dict, context) -> tuple:
    x, y = models.load_site_data(context.site_name, context.config, "train")
    w, b = np.array(weights["w"], dtype=float), np.array(weights["b"], dtype=float)
    rate = float(context.config.get("LEARNING_RATE", 0.2))
    steps = int(context.config.get("LOCAL_STEPS", 10)) * int(context.config.get("LOCAL_ROUNDS", 1))
    pause = float(context.config.get("STEP_SLEEP_SECONDS", 0))  # lets tests catch a job mid-training
    for _ in range(steps):
        if context.should_stop():
            break
        if pause:
            time.sleep(pause)
        error = models.predict({"w": w, "b": b}, x) - y
        w -= rate * x.T @ error / len(y)
        b -= rate * np.array([error.mean()])
    trained = {"w": w, "b": b}
    return trained, len(y), {"loss": models.log_loss(trained, x, y)}
