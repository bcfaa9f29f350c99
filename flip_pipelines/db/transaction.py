"""What every transition shares: one transaction per call, row lookups that raise, the log, the audit trail.

Every public function of ``registry``, ``claims`` and ``lifecycle`` takes a session, runs in one transaction that
it commits, and rolls back on any error: a failure never leaves half a transition behind. Missing rows raise
``NotFoundError``; a database failure raises ``DatabaseError``; nothing fails silently.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session

from flip_pipelines.db.models import FLLogs, Model, ModelsAudit
from flip_pipelines.domain.enums import AUDITED_MODEL_STATUSES, ModelStatus
from flip_pipelines.domain.errors import ConflictError, DatabaseError, FlipError, NotFoundError


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Commit on success; roll back on any exception, turning driver errors into ``DatabaseError``."""
    try:
        yield session
        session.commit()
    except FlipError:
        session.rollback()
        raise
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"the database refused the write: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        session.rollback()
        raise DatabaseError(f"database error: {exc.__class__.__name__}: {exc}") from exc
    except BaseException:
        session.rollback()
        raise


def get_row(session: Session, table: type, key: Any, what: str, *, for_update: bool = False) -> Any:
    """``for_update``: lock the row (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers) and read it
    afresh, for a transition that decides from the row's state — two sensors ending one job at once must not both
    see it running.

    Raises: NotFoundError naming ``what`` and ``key``."""
    row = session.get(table, key, with_for_update=True, populate_existing=True) if for_update \
        else session.get(table, key)
    if row is None:
        raise NotFoundError(f"{what} {key} not found")
    return row


def write_log(
    session: Session,
    model_id: uuid.UUID,
    message: str | None,
    *,
    success: bool = True,
    event_type: str | None = None,
    details: dict[str, Any] | None = None,
) -> FLLogs:
    """Add an ``fl_logs`` row (what the user reads about a model's training) to the open transaction: text, or
    an event (``event_type`` with its ``details``), never both — FLIP's reader shows one or the other.

    Raises:
        ValueError: both or neither of ``message`` and ``event_type`` given (a programming error).
    """
    if (message is None) == (event_type is None):
        raise ValueError("an fl_logs row holds exactly one of a log message and an event type")
    row = FLLogs(model_id=model_id, log=message, success=success, event_type=event_type, details=details)
    session.add(row)
    return row


def set_model_status(session: Session, model: Model, status: ModelStatus) -> None:
    """Move a model to ``status`` in the open transaction; a move into PREPARED, RUNNING or RESULTS_UPLOADED is
    audited as FLIP audits it (``AUDITED_MODEL_STATUSES``; no user: the hub made it)."""
    if model.status != status:
        model.status = status
        session.add(model)
        action = AUDITED_MODEL_STATUSES.get(status)
        if action is not None:
            session.add(ModelsAudit(model_id=model.id, action=action))
