"""Exactly-once submission to an FL API that ignores the submit token (FLIP's own): which job an attempt adopts
instead of submitting again, decided without I/O.

FLIP's ``/list_jobs`` gives each job's ``job_id`` and ``status`` and nothing else — no name, no submission time —
but it filters by job name (``name_prefix``; FLIP's NVFlare upload names the job after the model id, meta.json
``name``) and lists in submission order, oldest first. So the first attempt of a training notes the jobs the net
lists for the model before it submits anything, and keeps that note on its run (a run tag, written before the
upload); every later attempt — an op retry, a run restarted after its worker died — lists again and adopts a job
listed since. A net trains one training at a time, so a job of the model that appeared after the note is this
training's, never an earlier training's of the same model (those were listed already).
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LISTED_BEFORE_TAG = "flip/fl_jobs_before_submit"


def encode_job_ids(job_ids: Iterable[str]) -> str:
    return json.dumps(sorted(job_ids))


def listed_before_first_attempt(notes_oldest_first: Sequence[str | None]) -> frozenset[str] | None:
    """The jobs the net listed before the training's first attempt: the note of its oldest run that has one (a
    later attempt's note may already hold the training's own job). None when no run noted anything — then no
    attempt reached the upload, let alone the submission. A note that is not a JSON list of ids counts as none.
    """
    for note in notes_oldest_first:
        if note is None:
            continue
        try:
            ids = json.loads(note)
        except ValueError:
            continue
        if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            return frozenset(ids)
    return None


@dataclass(frozen=True)
class Adoption:
    job_id: str | None  # the job this training already has on the net; None: submit
    also_new: tuple[str, ...] = ()  # other jobs of the model listed since the note (not this hub's doing)


def job_to_adopt(listed: Sequence[str], listed_before: frozenset[str] | None) -> Adoption:
    """The earliest-listed job that appeared since the first attempt's note (``listed`` in the net's order,
    oldest submission first); nothing when there is no note: no earlier attempt can have submitted."""
    if listed_before is None:
        return Adoption(None)
    new = [job_id for job_id in dict.fromkeys(listed) if job_id not in listed_before]
    return Adoption(new[0], tuple(new[1:])) if new else Adoption(None)
