"""Process-wide settings read from the environment, with embedded local defaults."""

import os
from pathlib import Path

DATA_DIR_ENV = "FLIP_DATA_DIR"
DATABASE_URL_ENV = "FLIP_DATABASE_URL"


def data_dir() -> Path:
    """The local data folder (embedded SQLite database, Dagster home, local S3 data).

    ``FLIP_DATA_DIR`` overrides the default ``./.flip`` (relative to the working directory).
    """
    return Path(os.environ.get(DATA_DIR_ENV, ".flip")).resolve()


def database_url() -> str:
    """The queue database URL: ``FLIP_DATABASE_URL``, else a SQLite file in the data folder."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        return url
    return f"sqlite:///{data_dir() / 'flip.db'}"
