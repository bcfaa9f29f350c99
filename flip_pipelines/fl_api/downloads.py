"""Fetch a bundle's presigned URLs into a staging folder, safely.

Every URL is checked before anything is written: http(s) only, on an allowed origin, and its object path must
lie inside the model's folder (no ``..``, ``.``, empty or absolute segments, also after percent-decoding). Files
are streamed to disk; on any failure the staging folder is removed, so no half-built job folder is left behind.
"""

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from flip_pipelines.domain.bundle import UnsafePathError, check_relative_key
from flip_pipelines.domain.redact import redact_url
from flip_pipelines.fl_api.errors import BadRequestError, UpstreamDownloadError

SAFE_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHUNK = 1024 * 1024


def check_model_id(model_id: str) -> str:
    """Raises BadRequestError unless the id is a plain folder name (NVFlare: ``[A-Za-z0-9._-]``)."""
    if not SAFE_MODEL_ID.match(model_id) or model_id in (".", ".."):
        raise BadRequestError(f"model id {model_id!r} is not a plain name ([A-Za-z0-9._-])")
    return model_id


def normalise_origin(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) origin")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def bundle_relative_path(url: str, model_id: str, allowed_origins: frozenset[str]) -> str:
    """Where a bundle URL's object goes in the job folder: its path after the ``<model_id>/`` segment.

    Raises:
        BadRequestError: not http(s), off-origin, or the object path escapes the model's folder.
    """
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequestError(f"bundle URL {shown} is not http(s)")
    if f"{parts.scheme}://{parts.netloc.lower()}" not in allowed_origins:
        raise BadRequestError(f"bundle URL {shown} is not on an allowed object-store origin")
    segments = unquote(parts.path).split("/")[1:]
    if any(s in (".", "..") for s in segments):
        raise BadRequestError(f"bundle URL {shown} escapes the model's folder")
    if model_id not in segments:
        raise BadRequestError(f"bundle URL {shown} is not inside the model's folder {model_id}/")
    relative = "/".join(segments[segments.index(model_id) + 1 :])
    try:
        return check_relative_key(relative)
    except UnsafePathError as exc:
        raise BadRequestError(f"bundle URL {shown} escapes the model's folder: {exc}") from None


def plan_downloads(urls: list[str], model_id: str, allowed_origins: frozenset[str]) -> dict[str, str]:
    """relative path → URL for every URL, all checked first. Raises BadRequestError (nothing written)."""
    planned: dict[str, str] = {}
    for url in urls:
        relative = bundle_relative_path(url, model_id, allowed_origins)
        if relative in planned:
            raise BadRequestError(f"two bundle URLs name the same file {relative}")
        planned[relative] = url
    return planned


def download_bundle(planned: dict[str, str], staging: Path, client: httpx.Client) -> int:
    """Stream every planned URL into ``staging``; returns bytes written. Removes ``staging`` on failure.

    Raises:
        BadRequestError: the object store refused a URL (expired, wrong signature, missing object).
        UpstreamDownloadError: the object store could not be reached or failed.
    """
    total = 0
    try:
        staging.mkdir(parents=True, exist_ok=False)
        for relative, url in planned.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with client.stream("GET", url) as response:
                    if response.status_code >= 500:
                        raise UpstreamDownloadError(
                            f"object store failed for {redact_url(url)}: HTTP {response.status_code}"
                        )
                    if response.status_code != 200:
                        raise BadRequestError(f"could not download {redact_url(url)}: HTTP {response.status_code}")
                    with open(target, "wb") as handle:
                        for chunk in response.iter_bytes(CHUNK):
                            handle.write(chunk)
                            total += len(chunk)
            except httpx.HTTPError as exc:
                raise UpstreamDownloadError(f"could not download {redact_url(url)}: {type(exc).__name__}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return total
