"""Errors the queue and services raise; each says what is wrong in one line."""


class FlipError(Exception):
    """Base of every error this project raises on purpose (the CLI prints these as one line)."""


class NotFoundError(FlipError):
    """A referenced row (model, trust, net, job, project, query) does not exist."""


class ConflictError(FlipError):
    """The write would break a uniqueness rule (a duplicate net name or endpoint, trust name, ...)."""


class InvalidInputError(FlipError):
    """The request is malformed (empty trust list, unknown backend, ...)."""


class DatabaseError(FlipError):
    """The database refused or failed a statement; the transaction was rolled back."""


class TransientError(FlipError):
    """A service the hub depends on is unreachable or failing right now: the same request may succeed later."""
