"""How the hub talks to each net's FL API: this project's FL API (bearer token, split NVFlare app folders, submit
tokens) or FLIP's own (no token — it authenticates nobody, so the hub's token must not leak to it — one NVFlare
``app/`` folder, and no submit token: the hub finds a job it already took in ``/list_jobs``, ``domain.submission``),
and which base applications its jobs are bundled with (FLIP's FL servers hand results back only for jobs bundled
with FLIP's own job templates, ``domain.uploaded_results``). FLIP's ``fl_nets`` table has no room for this, so it
comes from ``FLIP_NET_OPTIONS``."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from flip_pipelines.domain.bundle import NvflareLayout
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import InvalidInputError

PACKAGED_BASE_APPS = "package"  # the base applications shipped in flip_pipelines


@dataclass(frozen=True)
class NetOptions:
    bearer_token: bool = True
    nvflare_layout: NvflareLayout = NvflareLayout.SPLIT
    results_pushed: bool = False  # the FL server uploads its results and pushes the final status (FLIP's)
    submit_token: bool = True  # a repeated submit token returns the job already taken (FLIP's FL API ignores it)
    base_app_source: str | None = None  # the net's own base applications; None: the hub's (FLIP_BASE_APP_SOURCE)


FLAGS = {"bearer_token": True, "results_pushed": False, "submit_token": True}  # flag -> default
FLIP_FL_API = NetOptions(bearer_token=False, nvflare_layout=NvflareLayout.APP, results_pushed=True,
                         submit_token=False)
PRESETS = {"flip": FLIP_FL_API, "flip_pipelines": NetOptions()}
KEYS = ("preset", "nvflare_layout", "base_app_source", *FLAGS)


def parse_base_app_source(value: object) -> str:
    """Where base applications are read from: ``package``, ``s3://bucket/prefix`` (surrounding slashes of the
    prefix dropped) or an absolute folder path (FLIP keeps its job templates in one, ``FL_APP_BASE_DIR``); each
    holds ``<backend>/<job_type>/...``.

    Raises:
        InvalidInputError: anything else (the value is named).
    """
    if not isinstance(value, str):
        raise InvalidInputError("base_app_source must be a string")
    if value == PACKAGED_BASE_APPS:
        return value
    if value.startswith("s3://"):
        bucket, _, prefix = value[len("s3://"):].partition("/")
        if not bucket:
            raise InvalidInputError(f"base_app_source {value!r} names no bucket")
        return f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")
    if value.isprintable() and PurePosixPath(value).is_absolute():
        return value
    raise InvalidInputError(f"base_app_source must be {PACKAGED_BASE_APPS}, s3://bucket/prefix or an absolute folder "
                            f"path, not {value!r}")


def base_app_sources(nets: Mapping[str, FLBackend], options: Mapping[str, NetOptions],
                     default: str) -> dict[FLBackend, tuple[str, ...]]:
    """Per backend, the base application sources its nets bundle from (a net's own, else ``default``; ``default``
    first, then the others in order); a backend no net runs has ``default`` alone."""
    sources: dict[FLBackend, set[str]] = {backend: set() for backend in FLBackend}
    for net, backend in nets.items():
        sources[backend].add(options.get(net, NetOptions()).base_app_source or default)
    return {backend: tuple(sorted(found, key=lambda s: (s != default, s))) or (default,)
            for backend, found in sources.items()}


def _object_options(net: str, value: dict[str, object]) -> NetOptions:
    """Raises: InvalidInputError naming the net and the key."""
    preset = value.get("preset", "flip_pipelines")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: unknown preset {preset!r} "
                                f"(expected one of {', '.join(PRESETS)})")
    base = PRESETS[preset]
    try:
        layout = NvflareLayout(value.get("nvflare_layout", base.nvflare_layout.value))
    except ValueError:
        raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: nvflare_layout must be split or app") from None
    flags = {k: value.get(k, getattr(base, k)) for k in FLAGS}
    for key, flag in flags.items():
        if not isinstance(flag, bool):
            raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: {key} must be true or false")
    source = None
    if "base_app_source" in value:
        try:
            source = parse_base_app_source(value["base_app_source"])
        except InvalidInputError as exc:
            raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: {exc}") from None
    return replace(base, nvflare_layout=layout, base_app_source=source, **flags)


def parse_net_options(text: str) -> dict[str, NetOptions]:
    """``{"net-a": "flip", "net-b": {"preset": "flip", "base_app_source": "/srv/fl-apps"}, "net-c":
    {"bearer_token": false, "nvflare_layout": "app", "results_pushed": true, "submit_token": false}}`` → options per
    net name (nets not named get ``NetOptions()``). ``"flip"`` is FLIP's FL API, ``"flip_pipelines"`` this
    project's; an object's keys override its ``preset`` (default ``flip_pipelines``).

    Raises:
        InvalidInputError: not a JSON object of net names to a preset or an object of known keys (named).
    """
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"FLIP_NET_OPTIONS is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidInputError("FLIP_NET_OPTIONS must map net names to options")
    options = {}
    for net, value in raw.items():
        if isinstance(value, str):
            if value not in PRESETS:
                raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: unknown preset {value!r} "
                                        f"(expected one of {', '.join(PRESETS)})")
            options[net] = PRESETS[value]
            continue
        if not isinstance(value, dict) or set(value) - set(KEYS):
            raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: expected a preset or an object with "
                                    "preset, bearer_token, nvflare_layout, results_pushed, submit_token and/or "
                                    "base_app_source")
        options[net] = _object_options(net, value)
    return options
