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
from flip_pipelines.domain.enums import ModelStatus
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


def get_row(session: Session, table: type, key: Any, what: str) -> Any:
    """Raises: NotFoundError naming ``what`` and ``key``."""
    row = session.get(table, key)
    if row is None:
        raise NotFoundError(f"{what} {key} not found")
    return row


def write_log(
    session: Session,
    model_id: uuid.UUID,
    message: str,
    *,
    success: bool = True,
    event_type: str | None = None,
    details: dict[str, Any] | None = None,
) -> FLLogs:
    """Add an ``fl_logs`` row (what the user reads about a model's training) to the open transaction."""
    row = FLLogs(model_id=model_id, log=message, success=success, event_type=event_type, details=details)
    session.add(row)
    return row


def audit(session: Session, model_id: uuid.UUID, action: str) -> None:
    session.add(ModelsAudit(model_id=model_id, action=action))


def set_model_status(session: Session, model: Model, status: ModelStatus) -> None:
    """Move a model to ``status`` and audit the change (``STATUS:<status>``), in the open transaction."""
    if model.status != status:
        model.status = status
        session.add(model)
        audit(session, model.id, f"STATUS:{status.value}")
