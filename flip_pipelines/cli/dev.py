"""``flip-pipelines dev``: the local stack and the Dagster UI and daemon, stopped together by Ctrl-C."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from flip_pipelines import settings
from flip_pipelines.cli.common import Context, cli, pass_context, redacted
from flip_pipelines.db.migrate import upgrade_database


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
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="warning",
              envvar="FLIP_DAGSTER_LOG_LEVEL", show_default=True,
              help="Log level of the Dagster UI and daemon; 'info' prints a line per sensor tick (dozens a minute "
                   "while idle). Runs log in the UI either way. Env: FLIP_DAGSTER_LOG_LEVEL.")
@pass_context
def dev(obj: Context, host: str, port: int | None, instance_config: Path, workspace: Path | None,
        stack: bool, log_level: str) -> None:
    """Migrate the queue database and start the Dagster UI and daemon — with the whole local stack by default,
    so `train_model` runs on embedded defaults. While it runs, flip-pipelines commands in this folder read the
    stack's settings and the UI's address from $FLIP_DATA_DIR/stack.env, so `enqueue` starts its training run
    through this UI at once. Ctrl-C stops everything."""
    import signal

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
    env["FLIP_DAGSTER_UI_URL"] = env.get("FLIP_DAGSTER_UI_URL") or f"http://{host}:{port}"  # links in alerts
    click.echo(f"queue database:  {redacted(obj.url)}")
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
            stack_env = local_stack.start()
            env.update(stack_env)
            # FLIP_DAGSTER_UI_URL: `flip-pipelines enqueue` in another terminal starts its run through this UI
            settings.write_local_stack_env({**stack_env, settings.DATABASE_URL_ENV: obj.url,
                                            "FLIP_DAGSTER_UI_URL": env["FLIP_DAGSTER_UI_URL"]})
            click.echo(f"settings:        {settings.local_stack_env_file()} (other flip-pipelines commands in this "
                       "folder read it while the stack runs)")
            click.echo(f"demo model:      {local_stack.demo_model_id} — train it with: flip-pipelines enqueue "
                       f"{local_stack.demo_model_id} --trust Trust_1 --trust Trust_2")
        workspace = workspace or (Path("workspace.yaml") if Path("workspace.yaml").exists() else None)
        target = ["-w", str(workspace)] if workspace else ["-m", "flip_pipelines.definitions"]
        dg_cli = str(Path(sys.executable).parent / "dg")  # `dg dev`: what `dagster dev` says supersedes it
        env["VIRTUAL_ENV"] = sys.prefix  # this interpreter's environment is the project's
        dagster_process = subprocess.Popen([dg_cli, "dev", "--use-active-venv", "-h", host, "-p", str(port),
                                            "--log-level", log_level, *target], env=env)
        if _wait_for_ui(dagster_process, f"http://{host}:{port}"):
            click.echo(f"Dagster UI:      http://{host}:{port}")
            sys.stdout.flush()
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
            settings.local_stack_env_file().unlink(missing_ok=True)
            local_stack.stop()


def _wait_for_ui(process: "subprocess.Popen[bytes]", url: str, timeout: float = 300.0) -> bool:
    """Whether the UI answered before ``process`` ended: its address is printed only once it can be opened."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/server_info", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    if process.poll() is None:
        click.echo(f"warning: the Dagster UI did not answer at {url} within {timeout:.0f}s", err=True)
    return False


def _local_token() -> str:
    """A token for the local FL APIs, kept in the data folder so restarts agree with themselves."""
    import secrets

    token_file = settings.data_dir() / "fl_api_token"
    if not token_file.exists():
        settings.write_private_file(token_file, secrets.token_urlsafe(24))
    return token_file.read_text().strip()
