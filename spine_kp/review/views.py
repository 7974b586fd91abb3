"""The JSON the review page reads: the schema, the study list, one study (the review contract of issue 21).

Plain functions from the session to JSON-ready dicts, so the app's routes stay thin and the shapes are tested without
a server.
"""

from __future__ import annotations

from typing import Any

from spine_kp.review.session import ReviewSession, StudyState
from spine_kp.schema import Schema


def schema_json(schema: Schema, radius_mm: float) -> dict[str, Any]:
    """``{"name", "radius_mm", "landmarks": [{"id", "kind"}] (head to feet), "kinds": {kind: {"grades", "meanings"}}}``.

    A grade's meaning is the schema's (``"diffuse bulge"``, underscores as spaces), else its label.
    """
    kinds = {}
    for k in schema.kinds:
        meanings = {g: (m or g).replace("_", " ") for g, m in zip(k.grades, k.meanings)}
        kinds[k.name] = {"grades": list(k.grades), "meanings": meanings, "multi_label": k.multi_label}
    return {
        "name": schema.name,
        "radius_mm": radius_mm,
        "landmarks": [{"id": lm, "kind": kind} for lm, kind in zip(schema.landmarks, schema.landmark_kinds)],
        "kinds": kinds,
    }


def _summary(st: StudyState) -> dict[str, Any]:
    p = st.priority
    return {
        "uid": st.study.uid,
        "state": st.state,
        "uncertainty": p.uncertainty,
        "min_score": p.min_score,
        "flip_shift_mm": p.flip_shift_mm,
        "flags": list(p.flags),
        "n_landmarks": len(st.marks),
        "levels": list(p.levels),
    }


def studies_json(session: ReviewSession, state: str | None = None, level: str | None = None) -> dict[str, Any]:
    """``{"total": N, "studies": [...]}``, least certain first, filtered by state and level (None: all).

    ``total`` counts the studies listed (after the filters).
    """
    listed = []
    for uid in session.order:
        st = session.studies[uid]
        if (state is None or st.state == state) and (level is None or level in st.priority.levels):
            listed.append(_summary(st))
    return {"total": len(listed), "studies": listed}


def study_json(session: ReviewSession, uid: str) -> dict[str, Any]:
    """Everything the page needs to show and edit one study (decodes its main slice for the default window).

    Raises:
        UnknownStudy: no such study.
        IngestError: the slice cannot be decoded.
    """
    st = session.get(uid)
    study, series = st.study, st.study.series
    row_mm, col_mm = series.spacing
    window = session.cache.get(study.index, series.series_uid, study.z_index).window
    i = session.position[uid]
    return {
        "uid": uid,
        "series_uid": series.series_uid,
        "instance_uid": series.instances[study.z_index].sop_instance_uid,
        "z_index": study.z_index,
        "num_slices": series.num_slices,
        "spacing": [row_mm, col_mm],
        "width": series.cols,
        "height": series.rows,
        "window": list(window),
        "state": st.state,
        "version": st.version,
        "landmarks": [m.to_json() for m in st.marks],
        "gt": None if study.gt is None else [_truth(m.to_json()) for m in study.gt],
        "radius_px": [session.radius_mm / col_mm, session.radius_mm / row_mm],
        "flags": list(st.priority.flags),
        "index": i,
        "prev": session.order[i - 1] if i > 0 else None,
        "next": session.order[i + 1] if i + 1 < len(session.order) else None,
    }


def _truth(mark: dict[str, Any]) -> dict[str, Any]:
    """A ground-truth point has no score and is never edited."""
    return {k: mark[k] for k in ("id", "kind", "x", "y", "z", "grades")}
