"""Dagster ops: thin wrappers that call the queue, bundle and FL-API code and report to the run log."""
