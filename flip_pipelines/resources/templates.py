"""Where a base application's files are read from: the package, ``s3://bucket/prefix`` or a local folder.

Each source holds ``<backend>/<job_type>/...``, overlaid on ``<backend>/_common/...`` when there is one (files every
job type of that backend shares; the job type's own win): the layout ``flip-pipelines templates sync`` writes and
FLIP's ``FL_APP_BASE_DIR`` has (``nvflare/standard/app/...``). Only the files are found here; which of them a
bundle takes is ``domain.bundle``'s decision.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flip_pipelines.domain.bundle import JobType
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import FlipError
from flip_pipelines.domain.net_options import PACKAGED_BASE_APPS
from flip_pipelines.fl_api.base_apps import COMMON, template_sources


class TemplateNotFoundError(FlipError):
    pass


class TemplateSourceError(FlipError):
    """A base application source cannot be read as one: it holds nothing for the backend (a wrong prefix or
    folder), or its local folder is missing or holds a symlink (which could carry any file of the hub into a
    bundle). Not the model's fault, so no check refuses a model for it: the check fails instead."""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str


TemplateFiles = dict[str, Path | S3Object]  # relative path -> a file, or an object to copy server-side


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (``bucket``, ``some/prefix``) without surrounding slashes."""
    if not uri.startswith("s3://"):
        raise FlipError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise FlipError(f"{uri!r} names no bucket")
    return bucket, prefix.strip("/")


def _list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _from_s3(client: Any, source: str, backend: FLBackend, job_type: JobType) -> TemplateFiles:
    bucket, prefix = parse_s3_uri(source)
    files: TemplateFiles = {}
    for folder in (COMMON, job_type.value):
        root = "/".join(p for p in (prefix, backend.value, folder) if p) + "/"
        found = {k[len(root):]: S3Object(bucket, k) for k in _list_keys(client, bucket, root)}
        if folder == job_type.value and not found:
            backend_root = "/".join(p for p in (prefix, backend.value) if p) + "/"
            if not client.list_objects_v2(Bucket=bucket, Prefix=backend_root, MaxKeys=1).get("Contents"):
                raise TemplateSourceError(f"{source} holds no {backend.value} base applications")
            return {}  # no such template: the shared files alone are not one
        files.update(found)
    return files


def _files_in(folder: Path) -> dict[str, Path]:
    """Every regular file under ``folder`` by relative POSIX path.

    Raises:
        TemplateSourceError: a symlink is there (every one is named).
    """
    files: dict[str, Path] = {}
    links: list[str] = []
    for directory, subdirs, names in os.walk(folder):
        for name in sorted([*subdirs, *names]):
            path = Path(directory) / name
            if path.is_symlink():
                links.append(path.relative_to(folder).as_posix())
            elif name in names and path.is_file():
                files[path.relative_to(folder).as_posix()] = path
    if links:
        raise TemplateSourceError(f"refusing symlinks in the base application folder {folder}: {', '.join(links)}")
    return files


def _from_folder(source: str, backend: FLBackend, job_type: JobType) -> TemplateFiles:
    root = Path(source)
    if not root.is_dir():
        raise TemplateSourceError(f"the base application folder {source} does not exist")
    if not (root / backend.value).is_dir():
        raise TemplateSourceError(f"{source} holds no {backend.value} base applications")
    own = _files_in(root / backend.value / job_type.value) if (root / backend.value / job_type.value).is_dir() else {}
    if not own:
        return {}
    common = root / backend.value / COMMON
    return {**(_files_in(common) if common.is_dir() else {}), **own}


def find_template(client: Any, source: str, backend: FLBackend, job_type: JobType) -> TemplateFiles:
    """The files of one base application in ``source`` (``package``, ``s3://bucket/prefix`` or a folder path).

    Raises:
        TemplateNotFoundError: the source has the backend's base applications, but none for the job type.
        TemplateSourceError: the source holds nothing for the backend (a wrong prefix or folder), or the folder is
            missing or holds a symlink.
    """
    if source == PACKAGED_BASE_APPS:
        files: TemplateFiles = dict(template_sources(backend.value, job_type.value))
    elif source.startswith("s3://"):
        files = _from_s3(client, source, backend, job_type)
    else:
        files = _from_folder(source, backend, job_type)
    if not files:
        raise TemplateNotFoundError(f"no {backend.value} base application for job type {job_type.value} in {source}")
    return files
