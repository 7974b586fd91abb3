"""One review: the studies and what the user made of them, the journal that keeps it, and ``REVIEWED.json``.

:func:`open_session` scans ROOT once, reads the files (:mod:`spine_kp.review.inputs`), orders the studies
(:mod:`spine_kp.review.priority`) and replays the journal (:mod:`spine_kp.review.journal`). A change
(:meth:`ReviewSession.update`) is checked against the version the page read (a stale one is refused, so two tabs never
overwrite each other), journalled durably, and only then applied; ``REVIEWED.json`` is rewritten when a reviewed study
changes. One lock serialises changes: the server answers requests on several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_kp.errors import MissingInputError, OutputExistsError
from spine_kp.io.dicom import scan
from spine_kp.io.scan import no_study_message
from spine_kp.review.export import study_record, write_reviewed
from spine_kp.review.inputs import Study, read_studies
from spine_kp.review.journal import Journal, JournalError, file_digest, journal_path, now, read_journal
from spine_kp.review.marks import BadBody, Mark, parse_marks, parse_state, parse_version
from spine_kp.review.priority import Priority, rank, study_priority
from spine_kp.review.render import SliceCache
from spine_kp.schema import Schema

MAX_FILTER_KEYS = 16


class UnknownStudy(KeyError):
    """No study of this review has the UID (HTTP 404)."""


class StaleVersion(ValueError):
    """A change made to an older version of the study than the current one (HTTP 409)."""


@dataclass
class StudyState:
    """A study under review: what the files give (``study``), why it comes early, and the user's edits."""

    study: Study
    priority: Priority
    marks: tuple[Mark, ...]
    state: str = "to_review"
    version: int = 0


@dataclass
class ReviewSession:
    """Everything the server serves. Build it with :func:`open_session`.

    Attributes:
        schema: the landmark set.
        radius_mm: the matching radius (the ground truth's circle).
        studies: by UID.
        order: UIDs, least certain first.
        out: ``REVIEWED.json``.
        journal: the open journal (None until :func:`open_session` has replayed it).
        cursor: where the user was: ``{"uid": ..., "filter": {...}}``.
        warnings: lines for stderr from reading the inputs and the journal.
    """

    schema: Schema
    radius_mm: float
    studies: dict[str, StudyState]
    order: list[str]
    out: Path
    journal: Journal | None = None
    cursor: dict[str, Any] = field(default_factory=lambda: {"uid": None, "filter": {}})
    warnings: list[str] = field(default_factory=list)
    cache: SliceCache = field(default_factory=SliceCache)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.position = {uid: i for i, uid in enumerate(self.order)}

    def get(self, uid: str) -> StudyState:
        try:
            return self.studies[uid]
        except KeyError:
            raise UnknownStudy(f"no study {uid} in this review") from None

    def update(self, uid: str, body: Any) -> int:
        """Apply a page's change ``{"version", "landmarks", "state"}``; the new version.

        Raises:
            UnknownStudy: no such study.
            BadBody: a field breaks the contract (named in the message).
            StaleVersion: ``version`` is not the study's current version.
        """
        st = self.get(uid)
        if not isinstance(body, dict):
            raise BadBody(f"body: must be an object with version, landmarks and state, got {type(body).__name__}")
        version = parse_version(body.get("version"))
        marks = parse_marks(body.get("landmarks"), self.schema, st.study.geometry)
        state = parse_state(body.get("state"))
        with self.lock:
            if version != st.version:
                raise StaleVersion(
                    f"study {uid} was changed elsewhere (now version {st.version}, yours {version}): reload it"
                )
            if state == "reviewed" and not marks:  # a record without points is no training label: skip such a study
                raise BadBody("landmarks: a reviewed study needs at least one landmark; mark it skipped instead")
            entry = {"study": uid, "version": st.version + 1, "state": state, "landmarks": [m.to_json() for m in marks]}
            self._journal().append({**entry, "time": now()})  # on disk before anything changes
            export = state == "reviewed" or st.state == "reviewed"
            st.marks, st.state, st.version = marks, state, st.version + 1
            if export:
                self.write_reviewed()
            return st.version

    def set_cursor(self, body: Any) -> None:
        """Record where the user is: ``{"uid": UID or null, "filter": {name: text or null}}``, journalled.

        Raises:
            BadBody: an unknown uid, or a filter that is not a small object of texts.
        """
        cursor = parse_cursor(body, self.studies)
        with self.lock:
            self._journal().append({"cursor": cursor, "time": now()})
            self.cursor = cursor

    def reviewed_records(self) -> list[Any]:
        """The competition records of the reviewed studies, in the predictions file's order."""
        return [
            study_record(st.study.uid, st.study.series, st.study.z_index, st.marks)
            for st in self.studies.values()
            if st.state == "reviewed"
        ]

    def write_reviewed(self) -> Path:
        """Rewrite ``REVIEWED.json`` atomically from the current states."""
        return write_reviewed(self.out, self.reviewed_records(), self.schema.name)

    def _journal(self) -> Journal:
        if self.journal is None:
            raise RuntimeError("the review session has no open journal: build it with open_session")
        return self.journal

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def parse_cursor(body: Any, studies: Collection[str], where: str = "body") -> dict[str, Any]:
    """Validate ``{"uid": UID or null, "filter": {name: text or null}}``.

    Raises:
        BadBody: not an object, an unknown uid, or a filter that is not a small object of texts.
    """
    if not isinstance(body, dict):
        raise BadBody(f"{where}: must be an object with uid and filter")
    uid, filt = body.get("uid"), body.get("filter", {})
    if uid is not None and uid not in studies:
        raise BadBody(f"{where}.uid: no study {uid!r} in this review")
    ok = isinstance(filt, dict) and len(filt) <= MAX_FILTER_KEYS
    if not (ok and all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in filt.items())):
        raise BadBody(f"{where}.filter: must be an object of at most {MAX_FILTER_KEYS} names with text or null values")
    return {"uid": uid, "filter": dict(filt)}


def _replay(session: ReviewSession, entries: list[dict[str, Any]], path: Path) -> int:
    """Apply the journal's lines in order (line 1 is the header, so entry k is line k + 2); the studies changed.

    Raises:
        JournalError: a line that breaks the contract (a bad landmark, state or version), naming it.
    """
    changed: set[str] = set()
    for k, entry in enumerate(entries):
        where = f"{path}: line {k + 2}"
        try:
            if "cursor" in entry:
                cursor = entry["cursor"]
                if isinstance(cursor, dict) and cursor.get("uid") not in session.studies:
                    cursor = {**cursor, "uid": None}  # a study no longer under ROOT: start from the list
                session.cursor = parse_cursor(cursor, session.studies, "cursor")
                continue
            uid = entry.get("study")
            if uid not in session.studies:
                session.warnings.append(f"{where}: study {uid} is not under ROOT (or not predicted): its edits skipped")
                continue
            st = session.studies[uid]
            st.marks = parse_marks(entry.get("landmarks"), session.schema, st.study.geometry)
            st.state = parse_state(entry.get("state"))
            st.version = parse_version(entry.get("version"))
            changed.add(uid)
        except BadBody as exc:
            raise JournalError(f"{where}: {exc}; the journal is damaged: move it away") from None
    return len(changed)


def open_session(
    root: str | Path,
    predictions: str | Path,
    out: str | Path,
    annotations: str | Path | None = None,
    schema: str | None = None,
    radius_mm: float = 8.0,
) -> ReviewSession:
    """Scan ROOT, read the files, order the studies, replay the journal beside ``out`` and open it for appending.

    ``REVIEWED.json`` is rewritten when the journal held changes (a server killed between its journal line and the
    rewrite loses nothing). Nothing under ROOT and none of the inputs is written.

    Raises:
        MissingInputError: ROOT holds no study.
        OutputExistsError: ``out`` exists without its journal (it would be replaced by this review).
        JournalError: see :func:`spine_kp.review.journal.read_journal` and :func:`_replay`.
        UserError: see :func:`spine_kp.review.inputs.read_studies`.
    """
    path, digest = journal_path(out), file_digest(predictions)
    if Path(out).exists() and not path.exists():
        raise OutputExistsError(
            f"--out {out} exists but its journal {path} does not: this review would replace it; move it away or "
            "pass another --out"
        )
    result = scan(root)
    if not result.studies:
        raise MissingInputError(no_study_message(root, [s.reason for s in result.skipped]))
    schema_obj, studies, warnings = read_studies(result, predictions, annotations, schema)
    expected = {m.id for s in studies for m in s.marks}
    states = {
        s.uid: StudyState(s, study_priority(s.marks, expected, s.flip_shift_mm, schema_obj, radius_mm), s.marks)
        for s in studies
    }
    order = rank({uid: st.priority for uid, st in states.items()})
    replay = read_journal(path, predictions, digest)
    session = ReviewSession(schema_obj, radius_mm, states, order, Path(out), warnings=warnings + replay.warnings)
    changed = _replay(session, replay.entries, path)  # all checked before the journal is touched
    session.journal = Journal.open(path, predictions, digest, replay)
    if changed:
        session.write_reviewed()
    return session
