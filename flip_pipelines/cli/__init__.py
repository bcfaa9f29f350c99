"""``flip-pipelines``: set up and inspect the training queue, and run the FL APIs, local nets and dev stack.

One module per deployable: ``queue_admin`` and ``models`` (the hub's queue and registry), ``fl_api`` (the service
in front of one net), ``local_nets`` (local NVFlare and Flower deployments), ``dev`` (the whole local stack).
Every command has ``--help``; commands a script reads take ``--json``. Bad input exits non-zero with a one-line
reason on stderr and writes nothing.
"""

import sys
from collections.abc import Sequence

import click

from flip_pipelines.cli import dev, fl_api, hub_api, local_nets, models, queue_admin  # noqa: F401  (add commands)
from flip_pipelines.cli.common import cli
from flip_pipelines.domain.errors import FlipError

EXIT_BAD_INPUT = 1


def _storage_error(exc: Exception) -> str | None:
    """One line for an S3 failure (no credentials, endpoint unreachable, access denied), or None."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"S3 refused the request ({error.get('Code', '?')}): {error.get('Message', exc)}"
    if isinstance(exc, BotoCoreError):
        return f"S3: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: every expected failure becomes one line on stderr and a non-zero exit."""
    from flip_pipelines import settings

    settings.use_local_stack_env()
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
    except Exception as exc:
        message = _storage_error(exc)
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["cli", "main"]
