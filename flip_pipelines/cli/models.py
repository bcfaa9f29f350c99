"""Models and their files on S3: register, upload, check which backends they suit; the base applications."""

from pathlib import Path

import click

from flip_pipelines import settings
from flip_pipelines.cli.common import (
    Context,
    base_app_sources,
    bundle_store,
    cli,
    json_option,
    owner_option,
    parse_uuid,
    pass_context,
    print_json,
)
from flip_pipelines.db import registry
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import FlipError


@cli.group()
def models() -> None:
    """Models: what gets trained."""


@models.command("add")
@click.argument("name")
@click.option("--project", "project_name", required=True, help="Name of the project the model belongs to.")
@click.option("--trust", "trust_names", multiple=True,
              help="A trust approved to train the model (repeatable). Default: every registered trust.")
@click.option("--description", default="", help="What the model is (FLIP shows it).")
@owner_option
@json_option
@pass_context
def models_add(obj: Context, name: str, project_name: str, trust_names: tuple[str, ...], description: str,
               owner_id: str | None, as_json: bool) -> None:
    """Create model NAME in a project, with the trusts approved to train it; prints the model id."""
    session = obj.session()
    trust_ids = registry.get_trust_ids_by_names(session, list(trust_names)) if trust_names else None
    model = registry.add_model(session, name, project_name, trust_ids=trust_ids, description=description,
                               owner_id=parse_uuid(owner_id, "owner id") if owner_id else None)
    if as_json:
        print_json({"id": model.id, "name": model.name, "status": model.status.value})
    else:
        click.echo(model.id)


@models.command("approve")
@click.argument("model_id")
@click.option("--trust", "trust_names", multiple=True, required=True, help="A trust to approve (repeatable).")
@json_option
@pass_context
def models_approve(obj: Context, model_id: str, trust_names: tuple[str, ...], as_json: bool) -> None:
    """Approve trusts to train MODEL_ID (FLIP's model_trust_intersect); a job naming a trust not approved is
    refused at enqueue, and retired if it is already queued."""
    session = obj.session()
    model_uuid = parse_uuid(model_id, "model id")
    registry.approve_trusts(session, model_uuid, registry.get_trust_ids_by_names(session, list(trust_names)))
    approved = registry.approved_trust_names(session, model_uuid)
    if as_json:
        print_json({"model_id": model_uuid, "approved": approved})
    else:
        click.echo(f"approved for model {model_uuid}: {', '.join(approved)}")


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

    model_uuid = parse_uuid(model_id, "model id")
    bucket = bucket or settings.model_bucket()
    uploaded = upload_model_folder(
        bundle_store().client, bucket, str(model_uuid), folder,
        max_file_bytes=max_file_bytes if max_file_bytes is not None else settings.max_model_file_bytes(),
    )
    if as_json:
        print_json({"bucket": bucket, "objects": uploaded})
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
        print_json(rows)
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
    written = sync_templates(bundle_store().client, destination)
    click.echo(f"wrote {len(written)} template file(s) to {destination}")


@models.command("check")
@click.argument("model_id")
@click.option("--backend", "backends", multiple=True, type=click.Choice([b.value for b in FLBackend]),
              help="Check only this backend (repeatable). Default: every backend.")
@json_option
@pass_context
def models_check(obj: Context, model_id: str, backends: tuple[str, ...], as_json: bool) -> None:
    """Dry run: plan MODEL_ID's bundle for each backend and print OK or every reason it cannot train there.

    Reads the model's object listing and config.json only; nothing is submitted or written. Exits 1 when the
    model suits none of the backends checked. `enqueue` runs the same check."""
    model_uuid = parse_uuid(model_id, "model id")
    session = obj.session()
    model = registry.get_model(session, model_uuid)
    wanted = tuple(FLBackend(b) for b in backends) or tuple(FLBackend)
    check = bundle_store().check(str(model_uuid), wanted, sources=base_app_sources(session))
    registered = registry.registered_backends(session)
    if as_json:
        print_json({"model_id": str(model_uuid), "model": model.name, "backends": [
            {"backend": f.backend.value, "ok": f.ok, "job_type": f.job_type.value if f.job_type else None,
             "problems": list(f.problems), "plan": f.summary, "net_registered": f.backend in registered}
            for f in check.fits]})
    else:
        click.echo(f"model {model.name} ({model_uuid})")
        for fit in check.fits:
            nets = "" if fit.backend in registered else " (no net of this backend is registered)"
            click.echo(f"  {fit.backend.value}: {'OK — ' + fit.summary if fit.ok else 'NOT OK'}{nets}")
            for problem in fit.problems:
                click.echo(f"    - {problem}")
    if not check.backends:
        raise FlipError(f"model {model.name} suits none of: {', '.join(b.value for b in wanted)}")
