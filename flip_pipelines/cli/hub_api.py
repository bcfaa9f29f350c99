"""``flip-pipelines hub-api serve``: receives what FLIP's FL servers push to the hub (status, metrics, logs)."""

import hashlib

import click

from flip_pipelines.cli.common import Context, cli, pass_context
from flip_pipelines.domain.errors import FlipError


@cli.group("hub-api")
def hub_api() -> None:
    """The hub's internal API that FL servers push training status, metrics and logs to (FLIP's routes)."""


@hub_api.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8010, show_default=True, envvar="FLIP_HUB_API_PORT",
              help="Env: FLIP_HUB_API_PORT.")
@click.option("--key-hash", envvar="FLIP_INTERNAL_SERVICE_KEY_HASH", default=None, show_envvar=True,
              help="SHA-256 hex of the key FL servers send in X-Internal-Service-Key (FLIP's "
                   "INTERNAL_SERVICE_KEY_HASH).")
@click.option("--key", envvar="FLIP_INTERNAL_SERVICE_KEY", default=None, show_envvar=True,
              help="The key itself, when no hash is given (prefer the env var: flags show in `ps`).")
@pass_context
def hub_api_serve(obj: Context, host: str, port: int, key_hash: str | None, key: str | None) -> None:
    """Serve PUT /model/{id}/status/{status}, POST /model/{id}/metrics and POST /model/{id}/logs on HOST:PORT,
    writing to the configured queue database, until interrupted."""
    import uvicorn

    from flip_pipelines.db.engine import cached_engine
    from flip_pipelines.hub_api.app import create_app

    if key_hash is None and not key:
        raise FlipError("the hub API needs the internal service key: set FLIP_INTERNAL_SERVICE_KEY_HASH "
                        "(or FLIP_INTERNAL_SERVICE_KEY)")
    digest = (key_hash or hashlib.sha256(key.encode()).hexdigest()).strip().lower()  # type: ignore[union-attr]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise FlipError("FLIP_INTERNAL_SERVICE_KEY_HASH must be a SHA-256 hex digest (64 hex characters)")
    obj.session()  # refuses an unmigrated database with one line, before serving
    uvicorn.run(create_app(cached_engine(obj.url), digest), host=host, port=port, log_level="info")
