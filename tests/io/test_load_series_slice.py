"""``load_series_slice``: any image of a named series, by its index along the slice normal (the review's slices)."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_studies import StudyBuilder

from spine_kp.io.dicom import IngestError, load_series_slice, scan


def test_decodes_the_image_at_that_position_of_the_named_series(study: StudyBuilder) -> None:
    study.add("T1_TSE_SAG", te=12, tr=500)
    t2 = study.add("T2_TSE_SAG", n=7, reverse_instance_numbers=True)  # instance numbers disagree with positions
    index = scan(study.root).studies[study.study_uid]
    for z in (0, 2, 6):
        sl = load_series_slice(index, t2.series_uid, z)
        assert (sl.series_uid, sl.instance_uid, sl.z_index, sl.num_slices) == (t2.series_uid, t2.uids_by_rank[z], z, 7)
        np.testing.assert_array_equal(sl.pixels, np.full(sl.shape, t2.value + 10 * z, np.float32))


def test_refuses_an_unknown_series_or_an_index_outside_it(study: StudyBuilder) -> None:
    t2 = study.add("T2_TSE_SAG", n=3)
    index = scan(study.root).studies[study.study_uid]
    with pytest.raises(IngestError, match="no series with SeriesInstanceUID 1.2.3"):
        load_series_slice(index, "1.2.3", 0)
    for z in (-1, 3):
        with pytest.raises(IngestError, match=f"has no image {z} \\(0-2\\)"):
            load_series_slice(index, t2.series_uid, z)
