"""Base applications (templates) per backend and job type, bundled with each model's files.

Layout: ``<backend>/<job_type>/...``, overlaid on ``<backend>/_common/...`` (files every job type of that
backend shares; a job type's own file wins). The Python files in here run inside the FL server and clients,
not in this package: they import only the standard library, numpy and the FL framework.
"""

from pathlib import Path

BASE_APPS_DIR = Path(__file__).parent
COMMON = "_common"


def _files_under(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def template_sources(backend: str, job_type: str) -> dict[str, Path]:
    """Every file of a packaged template: relative POSIX path → file on disk. Empty for an unknown template."""
    own = _files_under(BASE_APPS_DIR / backend / job_type)
    if not own:
        return {}
    return {**_files_under(BASE_APPS_DIR / backend / COMMON), **own}


def template_files(backend: str, job_type: str) -> list[str]:
    return sorted(template_sources(backend, job_type))
