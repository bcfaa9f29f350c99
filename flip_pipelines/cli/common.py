"""What every ``flip-pipelines`` command shares: the root group, the database context, output helpers."""

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url
from sqlmodel import Session

from flip_pipelines import settings
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import current_revision
from flip_pipelines.domain.errors import FlipError


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise FlipError(f"{what} {text!r} is not a UUID") from exc


class Context:
    """The database URL chosen for this invocation, and a session opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: Session | None = None

    def session(self, *, require_migrated: bool = True) -> Session:
        """Raises:
            FlipError: the database cannot be reached, or (``require_migrated``) has no tables yet."""
        if self._session is None:
            from sqlalchemy.exc import OperationalError

            try:
                revision = current_revision(self.url) if require_migrated else ""
            except OperationalError as exc:
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
                raise FlipError(f"cannot reach the database at {redacted(self.url)}: {reason}") from exc
            if revision is None:
                raise FlipError(self._no_tables())
            self._session = new_session(make_engine(self.url))
        return self._session


    def _no_tables(self) -> str:
        database = make_url(self.url).database if make_url(self.url).get_backend_name() == "sqlite" else None
        if database and database != ":memory:" and not Path(database).exists():
            return (f"no queue database at {database}: run this in the folder 'make dev' runs in (the data "
                    f"folder, $FLIP_DATA_DIR, is {settings.data_dir()} here), point FLIP_DATABASE_URL at it, or "
                    "create it with 'flip-pipelines db upgrade'")
        return f"the database at {redacted(self.url)} has no tables yet: run 'flip-pipelines db upgrade'"


pass_context = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
owner_option = click.option(
    "--owner-id", default=None, metavar="UUID",
    help="Owner's user id (on a FLIP hub: your identity provider's sub). Env: FLIP_OWNER_ID; default: the hub's.")


def bundle_store():  # type: ignore[no-untyped-def]
    """The S3 bundle store the pipeline uses, configured from the environment (FLIP_S3_*, FLIP_*_BUCKET); its
    client is the resource's without the resource, since importing Dagster would cost a command a second."""
    from flip_pipelines.resources.bundles import BundleStore
    from flip_pipelines.resources.s3_client import s3_client_from_env

    return BundleStore(s3_client_from_env(), model_bucket=settings.model_bucket(),
                       bundle_bucket=settings.bundle_bucket(), base_app_source=settings.base_app_source())


def base_app_sources(session: Session) -> dict:  # type: ignore[type-arg]
    """Per backend, the base application sources the registered nets bundle from (``FLIP_NET_OPTIONS``'s
    ``base_app_source``, else ``FLIP_BASE_APP_SOURCE``): what a model's check plans against."""
    from flip_pipelines.db import registry
    from flip_pipelines.domain.net_options import base_app_sources as sources_of

    return sources_of(registry.net_backends(session), settings.all_net_options(), settings.base_app_source())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar=settings.DATABASE_URL_ENV,
    default=None,
    metavar="URL",
    help="Queue database (SQLAlchemy URL). Env: FLIP_DATABASE_URL. Default: SQLite in $FLIP_DATA_DIR (./.flip).",
)
@click.version_option(package_name="flip_pipelines")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Federated-learning training orchestration on Dagster: queue, nets, trusts, models and the local stack."""
    ctx.obj = Context(database_url or settings.database_url())
