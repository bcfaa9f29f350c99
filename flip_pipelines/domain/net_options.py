"""How the hub talks to each net's FL API: this project's FL API (bearer token, split NVFlare app folders, submit
tokens) or FLIP's own (no token — it authenticates nobody, so the hub's token must not leak to it — one NVFlare
``app/`` folder, and no submit token: the hub finds a job it already took in ``/list_jobs``, ``domain.submission``).
FLIP's ``fl_nets`` table has no room for this, so it comes from ``FLIP_NET_OPTIONS``."""

import json
from dataclasses import dataclass

from flip_pipelines.domain.bundle import NvflareLayout
from flip_pipelines.domain.errors import InvalidInputError


@dataclass(frozen=True)
class NetOptions:
    bearer_token: bool = True
    nvflare_layout: NvflareLayout = NvflareLayout.SPLIT
    results_pushed: bool = False  # the FL server uploads its results and pushes the final status (FLIP's)
    submit_token: bool = True  # a repeated submit token returns the job already taken (FLIP's FL API ignores it)


FLAGS = {"bearer_token": True, "results_pushed": False, "submit_token": True}  # flag -> default
FLIP_FL_API = NetOptions(bearer_token=False, nvflare_layout=NvflareLayout.APP, results_pushed=True,
                         submit_token=False)
PRESETS = {"flip": FLIP_FL_API, "flip_pipelines": NetOptions()}


def parse_net_options(text: str) -> dict[str, NetOptions]:
    """``{"net-a": "flip", "net-b": {"bearer_token": false, "nvflare_layout": "app", "results_pushed": true,
    "submit_token": false}}`` → options per net name
    (nets not named get ``NetOptions()``). ``"flip"`` is FLIP's FL API, ``"flip_pipelines"`` this project's.

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
        if not isinstance(value, dict) or set(value) - {"nvflare_layout", *FLAGS}:
            raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: expected a preset or an object with "
                                    "bearer_token, nvflare_layout, results_pushed and/or submit_token")
        try:
            layout = NvflareLayout(value.get("nvflare_layout", NvflareLayout.SPLIT.value))
        except ValueError:
            raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: nvflare_layout must be split or app") from None
        flags = {k: value.get(k, default) for k, default in FLAGS.items()}
        for key, flag in flags.items():
            if not isinstance(flag, bool):
                raise InvalidInputError(f"FLIP_NET_OPTIONS: net {net!r}: {key} must be true or false")
        options[net] = NetOptions(nvflare_layout=layout, **flags)
    return options
