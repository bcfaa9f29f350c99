"""Dagster resources: I/O at the edges (queue database, S3, FL-API client)."""
