"""``flip-pipelines fl-api serve``: the FL-API service that fronts one net (FLIP's HTTP contract)."""

from pathlib import Path

import click

from flip_pipelines import settings
from flip_pipelines.cli.common import cli
from flip_pipelines.domain.errors import FlipError


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
@click.option("--server-workspace", type=click.Path(file_okay=False, path_type=Path),
              envvar="FLIP_NVFLARE_SERVER_WORKSPACE", default=None,
              help="NVFlare: the server's workspace (its kit folder, where run folders appear), for live per-round "
                   "metrics of running jobs; without it they appear when the job ends. "
                   "Env: FLIP_NVFLARE_SERVER_WORKSPACE.")
@click.option("--superlink", envvar="FLIP_FLOWER_SUPERLINK", default="127.0.0.1:9091", show_default=True,
              help="Flower: the SuperLink address (host:port). Env: FLIP_FLOWER_SUPERLINK.")
@click.option("--node-names", type=click.Path(dir_okay=False, path_type=Path), envvar="FLIP_FLOWER_NODE_NAMES",
              default=None, help="Flower: JSON file node id → site name (written by `flower up`).")
@click.option("--stall-seconds", type=float, envvar="FLIP_FLOWER_STALL_SECONDS", default=120.0, show_default=True,
              help="Flower: stop and fail a run that waits this long for SuperNodes.")
@click.option("--default-rounds", type=int, default=1, show_default=True,
              help="Rounds used when a model's config.json sets none.")
def fl_api_serve(backend: str, host: str, port: int, token: str, upload_dir: Path | None,
                 allowed_origins: tuple[str, ...], admin_kit: Path | None, admin_user: str,
                 server_workspace: Path | None, superlink: str,
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
                                         allowed_origins=origins, default_rounds=default_rounds,
                                         server_workspace=server_workspace)
    else:
        from flip_pipelines.fl_api.backends.flower import FlowerBackend

        service_backend = FlowerBackend(superlink=superlink, upload_dir=upload_dir, allowed_origins=origins,
                                        node_names_file=node_names, stall_seconds=stall_seconds,
                                        default_rounds=default_rounds)
    app = create_app(service_backend, token)
    click.echo(f"FL API ({backend}) on http://{host}:{port}; job folders in {upload_dir}")
    uvicorn.run(app, host=host, port=port, log_level="info")
