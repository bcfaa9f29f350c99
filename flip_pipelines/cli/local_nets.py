"""``flip-pipelines nvflare|flower up|down``: real local FL deployments for development and tests."""

from pathlib import Path

import click

from flip_pipelines.cli.common import cli
from flip_pipelines.domain.errors import FlipError


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
