"""``flip-pipelines``: set up and inspect the training queue, and run the local stack.

Every command has ``--help``; commands a script reads take ``--json``. Bad input exits non-zero with a one-line
reason on stderr and writes nothing.
"""

import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url
from sqlmodel import Session

from flip_pipelines import settings
from flip_pipelines.db import queue
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import current_revision, upgrade_database
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import FlipError

EXIT_BAD_INPUT = 1


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Context:
    """The database URL chosen for this invocation, and a session opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: Session | None = None

    def session(self, *, require_migrated: bool = True) -> Session:
        if self._session is None:
            if require_migrated and current_revision(self.url) is None:
                raise FlipError(
                    f"the database at {_redacted(self.url)} has no tables yet: run 'flip-pipelines db upgrade'"
                )
            self._session = new_session(make_engine(self.url))
        return self._session


pass_context = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


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


# --- db -----------------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Create and migrate the queue database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@pass_context
def db_upgrade(obj: Context, revision: str) -> None:
    """Create or upgrade every queue table (FLIP's schema) in the configured database."""
    upgrade_database(obj.url, revision)
    click.echo(f"database {_redacted(obj.url)} at revision {current_revision(obj.url)}")


# --- nets ---------------------------------------------------------------------------------------------------


@cli.group()
def nets() -> None:
    """FL servers ("nets"), each with one training slot."""


@nets.command("add")
@click.argument("name")
@click.option("--endpoint", required=True, metavar="URL", help="Base URL of the net's FL API.")
@click.option("--backend", required=True, metavar="nvflare|flower", help="The FL framework the net runs.")
@json_option
@pass_context
def nets_add(obj: Context, name: str, endpoint: str, backend: str, as_json: bool) -> None:
    """Register net NAME, reached at --endpoint, running --backend."""
    try:
        fl_backend = FLBackend.parse(backend)
    except ValueError as exc:
        raise FlipError(str(exc)) from exc
    if not endpoint.startswith(("http://", "https://")):
        raise FlipError(f"endpoint {endpoint!r} is not an http(s) URL")
    net = queue.add_net(obj.session(), name, endpoint, fl_backend)
    if as_json:
        _print_json({"id": net.id, "name": net.name, "endpoint": net.endpoint, "fl_backend": net.fl_backend.value})
    else:
        click.echo(f"net {net.name} ({net.fl_backend.value}) at {net.endpoint}: {net.id}")


@nets.command("list")
@json_option
@pass_context
def nets_list(obj: Context, as_json: bool) -> None:
    """Every net with its backend, slot status and current job."""
    states = queue.list_nets(obj.session())
    if as_json:
        _print_json(
            [
                {
                    "name": s.name,
                    "endpoint": s.endpoint,
                    "fl_backend": s.fl_backend.value,
                    "status": s.status.value,
                    "fl_job_id": s.fl_job_id,
                    "model_id": s.model_id,
                }
                for s in states
            ]
        )
        return
    rows = [(s.name, s.fl_backend.value, s.status.value, s.endpoint, s.fl_job_id, s.model_id) for s in states]
    click.echo(format_table(["net", "backend", "status", "endpoint", "fl_job", "model"], rows))


# --- trusts, projects, models -------------------------------------------------------------------------------


@cli.group()
def trusts() -> None:
    """Trusts (hospital sites) and the FL client slot each connects as."""


@trusts.command("add")
@click.argument("name")
@click.option("--slot", "slot_name", default=None, help="FL kit slot (client name on the FL server). Default: NAME.")
@json_option
@pass_context
def trusts_add(obj: Context, name: str, slot_name: str | None, as_json: bool) -> None:
    """Register trust NAME and assign it an FL kit slot."""
    trust = queue.add_trust(obj.session(), name, slot_name)
    slot = slot_name or name
    if as_json:
        _print_json({"id": trust.id, "name": trust.name, "slot_name": slot})
    else:
        click.echo(f"trust {trust.name} (slot {slot}): {trust.id}")


@cli.group()
def projects() -> None:
    """Projects and their cohort queries."""


@projects.command("add")
@click.argument("name")
@click.option("--query", "cohort_query", required=True, metavar="SQL", help="The project's cohort query.")
@json_option
@pass_context
def projects_add(obj: Context, name: str, cohort_query: str, as_json: bool) -> None:
    """Create project NAME with its cohort query."""
    project = queue.add_project(obj.session(), name, cohort_query)
    if as_json:
        _print_json({"id": project.id, "name": project.name})
    else:
        click.echo(f"project {project.name}: {project.id}")


@cli.group()
def models() -> None:
    """Models: what gets trained."""


@models.command("add")
@click.argument("name")
@click.option("--project", "project_name", required=True, help="Name of the project the model belongs to.")
@json_option
@pass_context
def models_add(obj: Context, name: str, project_name: str, as_json: bool) -> None:
    """Create model NAME in a project; prints the model id."""
    model = queue.add_model(obj.session(), name, project_name)
    if as_json:
        _print_json({"id": model.id, "name": model.name, "status": model.status.value})
    else:
        click.echo(model.id)


def _s3_client():  # type: ignore[no-untyped-def]
    from flip_pipelines.resources.s3 import s3_resource_from_env

    return s3_resource_from_env().get_client()


@models.command("upload")
@click.argument("model_id")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bucket", default=None, help="Model files bucket. Env: FLIP_MODEL_BUCKET (flip-model-files).")
@click.option("--max-file-bytes", type=int, default=None,
              help="Largest file accepted. Env: FLIP_MAX_MODEL_FILE_BYTES (5 GiB, as FLIP).")
@json_option
def models_upload(model_id: str, folder: Path, bucket: str | None, max_file_bytes: int | None, as_json: bool) -> None:
    """Upload a model's files from FOLDER to <model-bucket>/<MODEL_ID>/, replacing what was there.

    Symlinks and files over the size limit are refused (nothing is uploaded then).
    """
    from flip_pipelines.resources.bundles import upload_model_folder

    model_uuid = _parse_uuid(model_id, "model id")
    bucket = bucket or settings.model_bucket()
    uploaded = upload_model_folder(
        _s3_client(), bucket, str(model_uuid), folder,
        max_file_bytes=max_file_bytes if max_file_bytes is not None else settings.max_model_file_bytes(),
    )
    if as_json:
        _print_json({"bucket": bucket, "objects": uploaded})
    else:
        click.echo(f"uploaded {len(uploaded)} file(s), {sum(uploaded.values())} bytes, to s3://{bucket}/{model_uuid}/")


@cli.group()
def templates() -> None:
    """Base applications (per backend and job type) that bundles are built from."""


@templates.command("list")
@json_option
def templates_list(as_json: bool) -> None:
    """The base applications shipped in this package, with their files."""
    from flip_pipelines.domain.bundle import REQUIRED_FILES, SUPPORTED_JOB_TYPES
    from flip_pipelines.fl_api.base_apps import template_files

    rows = [
        {"backend": b.value, "job_type": j.value, "files": template_files(b.value, j.value),
         "required_model_files": list(REQUIRED_FILES[b][j])}
        for b, types in SUPPORTED_JOB_TYPES.items() for j in sorted(types)
    ]
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['backend']}/{row['job_type']}: model must provide {', '.join(row['required_model_files'])}")
        for name in row["files"]:
            click.echo(f"    {name}")


@templates.command("sync")
@click.argument("destination", required=False)
def templates_sync(destination: str | None) -> None:
    """Upload the packaged base applications to DESTINATION (s3://bucket/prefix).

    Default: FLIP_BASE_APP_SOURCE when it is an s3:// URI. Set FLIP_BASE_APP_SOURCE to the same URI to bundle
    from there instead of from the package.
    """
    from flip_pipelines.resources.bundles import sync_templates

    destination = destination or settings.base_app_source()
    if not destination.startswith("s3://"):
        raise FlipError("give a destination s3://bucket/prefix (FLIP_BASE_APP_SOURCE is not an s3:// URI)")
    written = sync_templates(_s3_client(), destination)
    click.echo(f"wrote {len(written)} template file(s) to {destination}")


# --- the queue ----------------------------------------------------------------------------------------------


def _parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise FlipError(f"{what} {text!r} is not a UUID") from exc


@cli.command()
@click.argument("model_id")
@click.option("--trust", "trust_names", multiple=True, required=True, help="A trust to train on (repeatable).")
@json_option
@pass_context
def enqueue(obj: Context, model_id: str, trust_names: tuple[str, ...], as_json: bool) -> None:
    """Queue a training job of MODEL_ID on the given trusts; prints the fl_job id."""
    session = obj.session()
    model_uuid = _parse_uuid(model_id, "model id")
    trust_ids = queue.get_trust_ids_by_names(session, list(trust_names))
    job = queue.add_fl_job(session, model_uuid, trust_ids)
    queue.log_queue_positions(session)
    if as_json:
        position = next((p.position for p in queue.queue_positions(session) if p.fl_job_id == job.id), None)
        _print_json({"fl_job_id": job.id, "model_id": job.model_id, "position": position})
    else:
        click.echo(job.id)


@cli.command()
@click.argument("model_id")
@click.option("--token", envvar="FLIP_FL_API_TOKEN", required=True, show_envvar=True,
              help="Bearer token of the nets' FL APIs (prefer the env var).")
@json_option
@pass_context
def abort(obj: Context, model_id: str, token: str, as_json: bool) -> None:
    """Stop MODEL_ID's training: queued jobs removed, its FL job aborted (pending or running), its net freed."""
    from flip_pipelines.fl_api.client import FLApiClient
    from flip_pipelines.ops.abort import abort_model_training
    from flip_pipelines.resources.database import QueueDatabase

    model_uuid = _parse_uuid(model_id, "model id")
    obj.session()  # the database must be migrated
    report = abort_model_training(QueueDatabase(url=obj.url), lambda url: FLApiClient(url, token), model_uuid)
    if as_json:
        _print_json({"model_id": report.model_id, "dequeued": report.dequeued, "aborted": report.aborted,
                     "problems": report.problems, "nothing_to_do": report.nothing_to_do})
    else:
        click.echo(report.summary())
    if report.problems:
        raise FlipError("; ".join(report.problems))


@cli.command("queue")
@json_option
@pass_context
def show_queue(obj: Context, as_json: bool) -> None:
    """Queued jobs with their positions, and every net with its status and current job."""
    session = obj.session()
    positions = queue.queue_positions(session)
    states = queue.list_nets(session)
    if as_json:
        _print_json(
            {
                "queued": [
                    {"position": p.position, "fl_job_id": p.fl_job_id, "model_id": p.model_id, "created": p.created}
                    for p in positions
                ],
                "nets": [
                    {"name": s.name, "fl_backend": s.fl_backend.value, "status": s.status.value,
                     "fl_job_id": s.fl_job_id, "model_id": s.model_id}
                    for s in states
                ],
            }
        )
        return
    click.echo(f"Queued jobs ({len(positions)})")
    click.echo(
        format_table(
            ["position", "fl_job", "model", "queued at (UTC)"],
            [(p.position, p.fl_job_id, p.model_id, f"{p.created:%Y-%m-%d %H:%M:%S}") for p in positions],
        )
    )
    click.echo(f"\nNets ({len(states)})")
    click.echo(
        format_table(
            ["net", "backend", "status", "fl_job", "model"],
            [(s.name, s.fl_backend.value, s.status.value, s.fl_job_id, s.model_id) for s in states],
        )
    )


# --- FL API ---------------------------------------------------------------------------------------------------


@cli.group("fl-api")
def fl_api() -> None:
    """The FL-API service that fronts one FL server (FLIP's HTTP contract)."""


def _default_origins() -> tuple[str, ...]:
    endpoint = settings.s3_endpoint_url()
    return (endpoint,) if endpoint else ()


@fl_api.command("serve")
@click.option("--backend", required=True, type=click.Choice(["nvflare", "flower"]), help="The FL framework.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, envvar="FLIP_FL_API_PORT",
              help="Env: FLIP_FL_API_PORT.")
@click.option("--token", envvar="FLIP_FL_API_TOKEN", required=True, show_envvar=True,
              help="Bearer token clients must send (16+ characters). Prefer the env var: flags show in `ps`.")
@click.option("--upload-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FLIP_FL_API_UPLOAD_DIR",
              default=None, help="Where job folders are built. Env: FLIP_FL_API_UPLOAD_DIR. Default: data folder.")
@click.option("--allowed-origin", "allowed_origins", multiple=True, envvar="FLIP_FL_API_ALLOWED_ORIGINS",
              help="Object-store origin bundle URLs may come from (repeatable). Env: FLIP_FL_API_ALLOWED_ORIGINS "
                   "(space-separated). Default: FLIP_S3_ENDPOINT_URL.")
@click.option("--admin-kit", type=click.Path(file_okay=False, path_type=Path), envvar="FLIP_NVFLARE_ADMIN_KIT",
              default=None, help="NVFlare: the admin startup kit folder. Env: FLIP_NVFLARE_ADMIN_KIT.")
@click.option("--admin-user", envvar="FLIP_NVFLARE_ADMIN_USER", default="admin@nvidia.com", show_default=True,
              help="NVFlare: the admin user name. Env: FLIP_NVFLARE_ADMIN_USER.")
@click.option("--superlink", envvar="FLIP_FLOWER_SUPERLINK", default="127.0.0.1:9091", show_default=True,
              help="Flower: the SuperLink address (host:port). Env: FLIP_FLOWER_SUPERLINK.")
@click.option("--node-names", type=click.Path(dir_okay=False, path_type=Path), envvar="FLIP_FLOWER_NODE_NAMES",
              default=None, help="Flower: JSON file node id → site name (written by `flower up`).")
@click.option("--stall-seconds", type=float, envvar="FLIP_FLOWER_STALL_SECONDS", default=120.0, show_default=True,
              help="Flower: stop and fail a run that waits this long for SuperNodes.")
@click.option("--default-rounds", type=int, default=1, show_default=True,
              help="Rounds used when a model's config.json sets none.")
def fl_api_serve(backend: str, host: str, port: int, token: str, upload_dir: Path | None,
                 allowed_origins: tuple[str, ...], admin_kit: Path | None, admin_user: str, superlink: str,
                 node_names: Path | None, stall_seconds: float, default_rounds: int) -> None:
    """Serve the FL API for one net on HOST:PORT until interrupted."""
    import uvicorn

    from flip_pipelines.fl_api.downloads import normalise_origin
    from flip_pipelines.fl_api.service import create_app

    origins_given = [o for value in (allowed_origins or _default_origins()) for o in value.split()]
    try:
        origins = frozenset(normalise_origin(o) for o in origins_given)
    except ValueError as exc:
        raise FlipError(str(exc)) from exc
    if not origins:
        raise FlipError("no object-store origin allowed: pass --allowed-origin or set FLIP_S3_ENDPOINT_URL")
    upload_dir = upload_dir or settings.data_dir() / "fl_api" / f"{backend}-{port}"
    if backend == "nvflare":
        if admin_kit is None or not (admin_kit / "startup").is_dir():
            raise FlipError("NVFlare needs --admin-kit (a folder with startup/), or FLIP_NVFLARE_ADMIN_KIT")
        from flip_pipelines.fl_api.backends.nvflare import NVFlareBackend

        service_backend = NVFlareBackend(admin_kit=admin_kit, username=admin_user, upload_dir=upload_dir,
                                         allowed_origins=origins, default_rounds=default_rounds)
    else:
        from flip_pipelines.fl_api.backends.flower import FlowerBackend

        service_backend = FlowerBackend(superlink=superlink, upload_dir=upload_dir, allowed_origins=origins,
                                        node_names_file=node_names, stall_seconds=stall_seconds,
                                        default_rounds=default_rounds)
    app = create_app(service_backend, token)
    click.echo(f"FL API ({backend}) on http://{host}:{port}; job folders in {upload_dir}")
    uvicorn.run(app, host=host, port=port, log_level="info")


# --- local deployments ------------------------------------------------------------------------------------------


@cli.group()
def nvflare() -> None:
    """A real local NVFlare deployment (server, sites, admin kit) for development and tests."""


@nvflare.command("up")
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Deployment folder.")
@click.option("--sites", type=int, default=2, show_default=True, help="Sites to start (site-1 ... site-N).")
@click.option("--spare-sites", type=int, default=0, show_default=True,
              help="Sites provisioned but not started (to test a missing client).")
@click.option("--port", type=int, default=None, help="Server port (FL and admin). Default: a free port.")
@click.option("--heart-beat-timeout", type=int, default=None, help="Seconds before a silent site is dropped.")
@click.option("--max-schedule-count", type=int, default=None, help="Scheduling attempts before CAN_NOT_SCHEDULE.")
@click.option("--min-schedule-interval", type=float, default=None, help="Seconds between scheduling attempts.")
@click.option("--dead-client-grace", type=float, default=None, help="Seconds a job waits on a dead site.")
def nvflare_up(workdir: Path, sites: int, spare_sites: int, port: int | None, heart_beat_timeout: int | None,
               max_schedule_count: int | None, min_schedule_interval: float | None,
               dead_client_grace: float | None) -> None:
    """Provision and start a server and SITES sites; print the admin kit path."""
    from flip_pipelines.local.nvflare import LocalNVFlare
    from flip_pipelines.local.processes import free_port

    scheduler: dict[str, float] = {}
    if max_schedule_count is not None:
        scheduler["max_schedule_count"] = max_schedule_count
    if min_schedule_interval is not None:
        scheduler["min_schedule_interval"] = min_schedule_interval
    deployment = LocalNVFlare(workdir=workdir.resolve(), port=port or free_port(), sites=sites,
                              spare_sites=spare_sites, heart_beat_timeout=heart_beat_timeout,
                              scheduler_args=scheduler, dead_client_grace=dead_client_grace)
    deployment.provision()
    try:
        seconds = deployment.start()
    except BaseException:
        deployment.stop(graceful=False)
        raise
    click.echo(f"NVFlare server on port {deployment.port} with {', '.join(deployment.site_names)} "
               f"(ready in {seconds:.1f}s); stop with: flip-pipelines nvflare down --workdir {workdir}")
    click.echo(str(deployment.admin_kit))


@cli.group()
def flower() -> None:
    """A real local Flower deployment (SuperLink and SuperNodes) for development and tests."""


@flower.command("up")
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Deployment folder.")
@click.option("--nodes", type=int, default=2, show_default=True, help="SuperNodes to start (site-1 ... site-N).")
@click.option("--port", type=int, default=None, help="SuperLink port. Default: a free port.")
def flower_up(workdir: Path, nodes: int, port: int | None) -> None:
    """Start a SuperLink and NODES SuperNodes; wait until every node is online."""
    from flip_pipelines.local.flower import LocalFlower
    from flip_pipelines.local.processes import free_port

    deployment = LocalFlower(workdir=workdir.resolve(), port=port or free_port(), nodes=nodes)
    try:
        seconds = deployment.start()
    except BaseException:
        deployment.stop()
        raise
    click.echo(f"Flower SuperLink at {deployment.address} with {', '.join(deployment.site_names)} online "
               f"(ready in {seconds:.1f}s); node names in {deployment.node_names_file}; "
               f"stop with: flip-pipelines flower down --workdir {workdir}")


@flower.command("down")
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Deployment folder.")
def flower_down(workdir: Path) -> None:
    """Stop the SuperLink and every SuperNode (with their app processes) by PID."""
    from flip_pipelines.local.flower import LocalFlower

    if not (workdir / "deployment.json").exists():
        raise FlipError(f"no Flower deployment in {workdir}")
    LocalFlower.load(workdir.resolve()).stop()
    click.echo(f"stopped the Flower deployment in {workdir}")


@nvflare.command("down")
@click.option("--workdir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Deployment folder.")
def nvflare_down(workdir: Path) -> None:
    """Stop every process of the deployment (server, sites, job workers) by PID."""
    from flip_pipelines.local.nvflare import LocalNVFlare

    if not (workdir / "deployment.json").exists():
        raise FlipError(f"no NVFlare deployment in {workdir}")
    LocalNVFlare.load(workdir.resolve()).stop()
    click.echo(f"stopped the NVFlare deployment in {workdir}")


# --- local stack ----------------------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the Dagster UI listens on.")
@click.option("--port", type=int, default=None, envvar="FLIP_DAGSTER_PORT",
              help="Dagster UI port. Env: FLIP_DAGSTER_PORT. Default: 3000, or a free port if 3000 is taken.")
@click.option("--instance-config", type=click.Path(dir_okay=False, path_type=Path), default=Path("dagster.yaml"),
              show_default=True, help="Dagster instance config copied into $DAGSTER_HOME.")
@click.option("--workspace", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Dagster workspace file. Default: ./workspace.yaml, else this package's definitions module.")
@click.option("--stack/--no-stack", default=True, show_default=True,
              help="Also run local S3, an NVFlare net and a Flower net (with FL APIs), trusts and a demo model.")
@pass_context
def dev(obj: Context, host: str, port: int | None, instance_config: Path, workspace: Path | None,
        stack: bool) -> None:
    """Migrate the queue database and start the Dagster UI and daemon — with the whole local stack by default,
    so `train_model` runs on embedded defaults. Ctrl-C stops everything."""
    import signal
    import subprocess

    from flip_pipelines.local.processes import free_port, port_is_open

    upgrade_database(obj.url)
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if instance_config.exists():
        shutil.copy(instance_config, home / "dagster.yaml")
    if port is None:
        port = 3000 if not port_is_open(3000, host) else free_port(host)
    env = {**os.environ, "DAGSTER_HOME": str(home), settings.DATABASE_URL_ENV: obj.url}
    env["FLIP_FL_API_TOKEN"] = env.get("FLIP_FL_API_TOKEN") or _local_token()
    click.echo(f"queue database:  {_redacted(obj.url)}")
    click.echo(f"DAGSTER_HOME:    {home}")
    local_stack = None

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    dagster_process = None
    try:
        if stack:
            from flip_pipelines.local.stack import LocalStack

            local_stack = LocalStack(data_dir=settings.data_dir() / "stack", database_url=obj.url,
                                     token=env["FLIP_FL_API_TOKEN"], log=click.echo)
            env.update(local_stack.start())
            click.echo(f"demo model:      {local_stack.demo_model_id} — train it with: flip-pipelines enqueue "
                       f"{local_stack.demo_model_id} --trust Trust_1 --trust Trust_2")
        workspace = workspace or (Path("workspace.yaml") if Path("workspace.yaml").exists() else None)
        target = ["-w", str(workspace)] if workspace else ["-m", "flip_pipelines.definitions"]
        dagster = shutil.which("dagster") or str(Path(sys.executable).parent / "dagster")
        click.echo(f"Dagster UI:      http://{host}:{port}")
        sys.stdout.flush()
        dagster_process = subprocess.Popen([dagster, "dev", "-h", host, "-p", str(port), *target], env=env)
        dagster_process.wait()
    except KeyboardInterrupt:
        click.echo("stopping ...")
    finally:
        if dagster_process is not None and dagster_process.poll() is None:
            dagster_process.send_signal(signal.SIGINT)
            try:
                dagster_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                dagster_process.kill()
        if local_stack is not None:
            local_stack.stop()


def _local_token() -> str:
    """A token for the local FL APIs, kept in the data folder so restarts agree with themselves."""
    import secrets

    token_file = settings.data_dir() / "fl_api_token"
    if not token_file.exists():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(secrets.token_urlsafe(24))
        token_file.chmod(0o600)
    return token_file.read_text().strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: every expected failure becomes one line on stderr and a non-zero exit."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="flip-pipelines", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except FlipError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
