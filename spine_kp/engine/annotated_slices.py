"""The annotated slice of each validation record, loaded once for the fits that run after training.

Both end-of-training fits (:mod:`spine_kp.engine.decode_fit`, :mod:`spine_kp.engine.score_map_fit`) predict the
image each annotation record grades (``record.primary``) and compare with its points.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from spine_kp.io.dicom import IngestError, StudyIndex, load_instance
from spine_kp.types import Slice, StudyRecord

log = logging.getLogger(__name__)


def load_annotated_slices(
    records: Sequence[StudyRecord], studies: Mapping[str, StudyIndex], neighbours: int, what: str
) -> list[tuple[StudyRecord, Slice]]:
    """``(record, slice)`` of every record whose annotated image loads, in record order.

    Records without an image, or whose study is not in ``studies``, are left out; an image that fails to load is
    logged as ``"<what>: <error>"`` and left out too (the training already reported it; the fit uses the rest).

    Args:
        records: annotation records (each uses ``record.primary``).
        studies: study UID -> StudyIndex holding them.
        neighbours: parasagittal slices per side to load with each (``predictor.slices_needed()``).
        what: the fit's name, for the warning.
    """
    out = []
    for rec in records:
        if rec.primary is None or rec.study_uid not in studies:
            continue
        try:
            out.append((rec, load_instance(studies[rec.study_uid], rec.primary.instance_uid, neighbours)))
        except IngestError as exc:
            log.warning("%s: %s", what, exc)
    return out
