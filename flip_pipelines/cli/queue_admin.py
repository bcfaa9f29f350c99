"""Queue administration: the database, nets, trusts, projects, and the queue itself (enqueue, abort, show)."""

import contextlib

import click
from sqlmodel import Session

from flip_pipelines.cli.common import (
    Context,
    base_app_sources,
    bundle_store,
    cli,
    format_table,
    json_option,
    owner_option,
    parse_uuid,
    pass_context,
    print_json,
    redacted,
)
from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.migrate import current_revision, upgrade_database
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import ConflictError, FlipError
from flip_pipelines.domain.queue import Claim
from flip_pipelines.domain.schema import SchemaAction

# --- db -----------------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Create and migrate the queue database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@pass_context
def db_upgrade(obj: Context, revision: str) -> None:
    """Create or upgrade every queue table (FLIP's definitions) in the configured database.

    A FLIP hub database (FLIP's Alembic head) is recognised and left exactly as it is; an older or unknown
    revision is refused and nothing is changed."""
    decision = upgrade_database(obj.url, revision)
    if decision.action is SchemaAction.LEAVE_FLIP_HUB:
        click.echo(f"database {redacted(obj.url)}: {decision.description}; used as it is, nothing changed")
    else:
        click.echo(f"database {redacted(obj.url)} at revision {current_revision(obj.url)}")


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
    net = registry.add_net(obj.session(), name, endpoint, fl_backend)
    if as_json:
        print_json({"id": net.id, "name": net.name, "endpoint": net.endpoint, "fl_backend": net.fl_backend.value})
    else:
        click.echo(f"net {net.name} ({net.fl_backend.value}) at {net.endpoint}: {net.id}")


@nets.command("list")
@json_option
@pass_context
def nets_list(obj: Context, as_json: bool) -> None:
    """Every net with its backend, slot status and current job."""
    states = registry.list_nets(obj.session())
    if as_json:
        print_json([{"name": s.name, "endpoint": s.endpoint, "fl_backend": s.fl_backend.value,
                     "status": s.status.value, "fl_job_id": s.fl_job_id, "model_id": s.model_id} for s in states])
        return
    rows = [(s.name, s.fl_backend.value, s.status.value, s.endpoint, s.fl_job_id, s.model_id) for s in states]
    click.echo(format_table(["net", "backend", "status", "endpoint", "fl_job", "model"], rows))


# --- trusts and projects --------------------------------------------------------------------------------------


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
    trust = registry.add_trust(obj.session(), name, slot_name)
    slot = slot_name or name
    if as_json:
        print_json({"id": trust.id, "name": trust.name, "slot_name": slot})
    else:
        click.echo(f"trust {trust.name} (slot {slot}): {trust.id}")


@cli.group()
def projects() -> None:
    """Projects and their cohort queries."""


@projects.command("add")
@click.argument("name")
@click.option("--query", "cohort_query", required=True, metavar="SQL", help="The project's cohort query.")
@click.option("--description", default="", help="What the project is for (FLIP shows it).")
@owner_option
@json_option
@pass_context
def projects_add(obj: Context, name: str, cohort_query: str, description: str, owner_id: str | None,
                 as_json: bool) -> None:
    """Create project NAME, approved for training, with its cohort query."""
    project = registry.add_project(obj.session(), name, cohort_query, description=description,
                                   owner_id=parse_uuid(owner_id, "owner id") if owner_id else None)
    if as_json:
        print_json({"id": project.id, "name": project.name})
    else:
        click.echo(f"project {project.name}: {project.id}")


# --- the queue ----------------------------------------------------------------------------------------------


@cli.command()
@click.argument("model_id")
@click.option("--trust", "trust_names", multiple=True,
              help="A trust to train on (repeatable). Default: every trust approved for the model.")
@click.option("--dagster-url", envvar="FLIP_DAGSTER_UI_URL", default="", show_envvar=True, metavar="URL",
              help="The Dagster UI to start the training run through when a net is free (`make dev` sets it for "
                   "commands run in its folder). Unset: only queue; the queue sensor starts the run.")
@click.option("--launch/--no-launch", default=True, show_default=True,
              help="Start the run at once when a suitable net is free and nothing else is queued; --no-launch only "
                   "queues.")
@json_option
@pass_context
def enqueue(obj: Context, model_id: str, trust_names: tuple[str, ...], dagster_url: str, launch: bool,
            as_json: bool) -> None:
    """Queue a training job of MODEL_ID on the given trusts; prints the fl_job id.

    The model's files are checked first (as `models check` does): a model that suits no registered backend is
    refused with the reasons, and nothing is queued. So is a trust not approved for the model, and any
    training while the hub is in deployment mode.

    With a Dagster UI (--dagster-url) and a free net of a backend the model suits, and no other job queued, the
    job takes that net in the same transaction that queues it and its train_model run is started through Dagster
    at once, as the queue sensor would start it a tick later. If Dagster cannot be reached or refuses, the net is
    given back and the job waits in the queue for the sensor; it is never lost or trained twice. --json says which
    happened: "dispatch" is launched (with run_id and net), queued, or claimed (Dagster did not answer the launch:
    the job keeps its net, and reconciliation queues it again if no run starts)."""
    session = obj.session()
    model_uuid = parse_uuid(model_id, "model id")
    names = list(trust_names) or registry.approved_trust_names(session, model_uuid)
    if not names:
        raise FlipError(f"no trust is approved for model {model_uuid}: name trusts with --trust, or approve some "
                        "(flip-pipelines models approve)")
    trust_ids = registry.get_trust_ids_by_names(session, names)
    registry.get_model(session, model_uuid)
    check = bundle_store().check(str(model_uuid), sources=base_app_sources(session))
    if launch and dagster_url:
        job, claim = claims.enqueue_and_claim_free_net(session, model_uuid, trust_ids, check)
    else:
        job, claim = lifecycle.enqueue_training(session, model_uuid, trust_ids, check), None
    run_id, dispatch, note = start_run(session, dagster_url, claim) if claim else (None, "queued", "")
    if as_json:
        position = next((p.position for p in lifecycle.queue_positions(session) if p.fl_job_id == job.id), None)
        print_json({"fl_job_id": job.id, "model_id": job.model_id, "position": position,
                    "backends": sorted(b.value for b in check.backends), "dispatch": dispatch, "run_id": run_id,
                    "net": claim.net_name if claim and dispatch != "queued" else None, "note": note})
    else:
        click.echo(job.id)
        if note:
            click.echo(note, err=True)


def start_run(session: Session, dagster_url: str, claim: Claim) -> tuple[str | None, str, str]:
    """Start the claim's run through Dagster; or give the claim back to the queue sensor when no run was started.
    (run id, "launched" | "queued" | "claimed", a line for people). "claimed": the launch's outcome is unknown, so
    the claim is kept (``services.launch``)."""
    from flip_pipelines.db import model_partitions
    from flip_pipelines.services.launch import LaunchError, launch_train_model

    try:
        key = model_partitions.partition_key_of_model(session, claim.model_id)
        run_id = launch_train_model(dagster_url, claim, key)
        return run_id, "launched", f"training run {run_id} started on net {claim.net_name}"
    except LaunchError as exc:
        if exc.run_may_exist:
            return None, "claimed", (f"{exc}; the job keeps net {claim.net_name}: its run starts if Dagster created "
                                     "it, otherwise reconciliation queues the job again")
        with contextlib.suppress(ConflictError):  # aborted meanwhile: nothing to give back
            lifecycle.requeue(session, claim.fl_job_id, f"its run could not be started at once ({exc})")
        return None, "queued", f"queued; the queue sensor starts it ({exc})"


@cli.command()
@click.argument("model_id")
@click.option("--token", envvar="FLIP_FL_API_TOKEN", default=None, show_envvar=True,
              help="Bearer token of the nets' FL APIs (prefer the env var; FLIP's own FL APIs need none).")
@json_option
@pass_context
def abort(obj: Context, model_id: str, token: str | None, as_json: bool) -> None:
    """Stop MODEL_ID's training: queued jobs removed, its FL job aborted (pending or running), its net freed."""
    from flip_pipelines.resources.fl_api import FLApiResource
    from flip_pipelines.services.abort import abort_model_training

    model_uuid = parse_uuid(model_id, "model id")
    fl_api = FLApiResource(token=token or None)
    report = abort_model_training(obj.session(), lambda net: fl_api.client(net.endpoint, net=net.name), model_uuid)
    if as_json:
        print_json({"model_id": report.model_id, "dequeued": report.dequeued, "aborted": report.aborted,
                    "problems": report.problems, "nothing_to_do": report.nothing_to_do})
    else:
        click.echo(report.summary())
    if report.problems:
        raise FlipError("; ".join(report.problems))


@cli.command("deployment-mode")
@click.argument("switch", required=False, type=click.Choice(["on", "off"]))
@json_option
@pass_context
def deployment_mode(obj: Context, switch: str | None, as_json: bool) -> None:
    """Show FLIP's deployment mode, or switch it on or off. While it is on, no training is queued or started
    (sensors claim nothing; running trainings go on); FLIP's own hub honours the same switch."""
    from flip_pipelines.db import site_config

    session = obj.session()
    if switch is not None:
        site_config.set_deployment_mode(session, switch == "on")
    enabled = site_config.deployment_mode(session)
    if as_json:
        print_json({"deployment_mode": enabled})
    else:
        click.echo(f"deployment mode: {'on (scheduling paused)' if enabled else 'off'}")


@cli.command("queue")
@json_option
@pass_context
def show_queue(obj: Context, as_json: bool) -> None:
    """Queued jobs with their positions, and every net with its status and current job."""
    session = obj.session()
    positions = lifecycle.queue_positions(session)
    states = registry.list_nets(session)
    if as_json:
        print_json({
            "queued": [{"position": p.position, "fl_job_id": p.fl_job_id, "model_id": p.model_id,
                        "created": p.created} for p in positions],
            "nets": [{"name": s.name, "fl_backend": s.fl_backend.value, "status": s.status.value,
                      "fl_job_id": s.fl_job_id, "model_id": s.model_id} for s in states],
        })
        return
    click.echo(f"Queued jobs ({len(positions)})")
    click.echo(format_table(["position", "fl_job", "model", "queued at (UTC)"],
                            [(p.position, p.fl_job_id, p.model_id, f"{p.created:%Y-%m-%d %H:%M:%S}")
                             for p in positions]))
    click.echo(f"\nNets ({len(states)})")
    click.echo(format_table(["net", "backend", "status", "fl_job", "model"],
                            [(s.name, s.fl_backend.value, s.status.value, s.fl_job_id, s.model_id) for s in states]))

