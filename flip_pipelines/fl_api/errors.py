"""Errors the FL-API service turns into ``{"detail": ...}`` responses with a status code."""

from flip_pipelines.domain.errors import FlipError


class ApiError(FlipError):
    status_code = 500


class BadRequestError(ApiError):
    status_code = 400


class JobNotFoundError(ApiError):
    status_code = 404


class ConflictingRequestError(ApiError):
    status_code = 409


class BackendUnavailableError(ApiError):
    """The FL server cannot be reached right now (a caller may retry)."""

    status_code = 503


class UpstreamDownloadError(ApiError):
    """A bundle URL could not be fetched (network error or server error at the object store)."""

    status_code = 502
