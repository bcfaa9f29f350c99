"""The hub API: receives what FLIP's FL servers push to the hub (model status, metrics, logs)."""
