"""Logistic regression on synthetic, non-IID data: each site's data is drawn from its name."""

import hashlib

import numpy as np

FEATURES = 5
TRUE_WEIGHTS = np.array([1.5, -2.0, 0.75, 0.0, 1.0])
TRUE_BIAS = -0.25


def initial_weights(config: dict) -> dict:
    return {"w": np.zeros(FEATURES), "b": np.zeros(1)}


def _seed(site_name: str) -> int:
    return int.from_bytes(hashlib.sha256(site_name.encode()).digest()[:4], "little")


def load_site_data(site_name: str, config: dict, split: str = "train") -> tuple:
    """Features and labels for one site; the split changes the draw, the site shifts the features."""
    seed = _seed(site_name)
    rng = np.random.default_rng(seed + (0 if split == "train" else 1_000_003))
    n = int(config.get("SAMPLES_PER_SITE", 400))
    shift = (seed % 7 - 3) / 10.0
    x = rng.normal(loc=shift, size=(n, FEATURES))
    probability = predict({"w": TRUE_WEIGHTS, "b": np.array([TRUE_BIAS])}, x)
    y = (rng.random(n) < probability).astype(float)
    return x, y


def predict(weights: dict, x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ weights["w"] + weights["b"][0])))


def log_loss(weights: dict, x, y) -> float:
    p = np.clip(predict(weights, x), 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
