"""Phantom physics, geometry and rendering (spine_kp.synth.phantom*)."""

from __future__ import annotations

import numpy as np
import pytest

from spine_kp.synth.anatomy import DiscLook, depth_profile
from spine_kp.synth.layout import SAGITTAL
from spine_kp.synth.phantom import (
    TISSUES,
    BiasField,
    MRSequence,
    Pose,
    acquire,
    fat_null_ti,
    make_textures,
    nearest_index,
    plane_grid,
    render_plane,
    resample,
    resample_matrix,
    tissue_signals,
)
from spine_kp.synth.sample import sample_anatomy

T2 = MRSequence(te=100.0, tr=4000.0)
T1 = MRSequence(te=12.0, tr=550.0)
STIR = MRSequence(te=50.0, tr=4000.0, ti=fat_null_ti(4000.0))


def test_contrasts_behave_like_real_sequences() -> None:
    sig = tissue_signals([T2, T1, STIR])  # (C,) per tissue, no jitter
    t2, t1, stir = 0, 1, 2
    assert sig["fat"][t1] > 2 * sig["muscle"][t1]  # fat bright on T1
    assert sig["fat"][t2] > 2 * sig["muscle"][t2]  # and on T2 TSE
    assert sig["fat"][stir] < 0.05 * sig["csf"][stir]  # suppressed on STIR
    assert sig["csf"][t1] < 0.5 * sig["fat"][t1]  # CSF dark on T1
    assert sig["csf"][t2] > sig["nucleus"][t2] > 3 * sig["annulus"][t2]  # bright CSF, bright normal nucleus
    assert sig["nucleus_degen"][t2] < 0.3 * sig["nucleus"][t2]  # degenerated disc dark on T2
    assert sig["csf"][stir] > sig["muscle"][stir]


def test_tissue_signal_jitter_is_seeded() -> None:
    a = tissue_signals([T2], np.random.default_rng(3))
    b = tissue_signals([T2], np.random.default_rng(3))
    c = tissue_signals([T2], np.random.default_rng(4))
    assert all(np.array_equal(a[k], b[k]) for k in TISSUES)
    assert any(not np.array_equal(a[k], c[k]) for k in TISSUES)


def test_pose_round_trip() -> None:
    pose = Pose.make(12.0, 0.02, (5.0, -30.0, 100.0))
    pts = np.random.default_rng(0).normal(0, 100, (20, 3))
    assert np.allclose(pose.to_anatomy(pose.to_patient(pts)), pts)


def test_resampling_preserves_constants_and_aligns_pixel_edges() -> None:
    m = resample_matrix(37, 100).toarray()
    assert np.allclose(m.sum(axis=1), 1.0)
    img = np.full((2, 30, 40), 7.0, dtype=np.float32)
    assert np.allclose(resample(img, (64, 50)), 7.0, atol=1e-4)
    # a ramp stays a ramp: output pixel centres map onto the same physical positions
    ramp = (np.arange(40, dtype=np.float32) + 0.5) / 40
    up = resample(np.tile(ramp, (8, 1)), (8, 100))[0]
    assert np.allclose(up[20:80], (np.arange(100)[20:80] + 0.5) / 100, atol=1e-3)
    assert list(nearest_index(2, 4)) == [0, 0, 1, 1]


def test_depth_profile_shrinks_off_midline() -> None:
    t = np.linspace(0, 1.2, 13)
    d = depth_profile(t)
    assert d[0] == 1.0 and d[-1] == 0.0 and np.all(np.diff(d) <= 0)
    assert depth_profile(0.5) == pytest.approx(float(depth_profile(np.array([0.5]))[0]))


def test_rician_noise_floor() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((1, 64, 64), dtype=np.float32)
    noise = (rng.standard_normal(img.shape, dtype=np.float32), rng.standard_normal(img.shape, dtype=np.float32))
    out = acquire(img, 2.0, noise, (64, 64))
    assert out.min() >= 0.0
    assert out.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh mean of pure noise


def _sagittal(x: float, disc_looks: dict[str, DiscLook] | None = None, n: int = 160) -> tuple[np.ndarray, ...]:
    """Render one sagittal slice at anatomy x; returns (img (3, n, n), labels, anatomy, grid)."""
    an = sample_anatomy(np.random.default_rng(1), disc_looks)
    pose = Pose.make(0.0, 0.0, (0.0, 0.0, 0.0))
    sp = 240.0 / n
    centre = np.array([x, 20.0, -20.0])
    row, col = SAGITTAL
    ipp = centre - (n - 1) / 2 * sp * row - (n - 1) / 2 * sp * col
    grid = plane_grid(pose, ipp, (*row, *col), (sp, sp), (n, n), 4.0)
    tex = make_textures(np.random.default_rng(2), 1, (n, n), sp, 4.0)[0]
    ids = {name: i + 1 for i, name in enumerate(an.names())}
    img, lab = render_plane(grid, an, tissue_signals([T2, T1, STIR]), tex, ids, BiasField(ripple=0.0))
    return img, lab, an, grid, ids


def _canal_signal(img: np.ndarray, an, grid, channel: int) -> float:
    """Mean signal just behind the L3 posterior wall (inside the thecal sac at the midline)."""
    b = next(b for b in an.bodies if b.name == "L3")
    y, z = b.frame.point(b.half_depth + 7.0, 0.0)
    r = int(round((grid.origin[2] - z) / -grid.d_row[2]))
    c = int(round((y - grid.origin[1]) / grid.d_col[1]))
    return float(img[channel, r - 2 : r + 3, c - 1 : c + 2].mean())


def test_lateral_slices_differ_from_the_midline() -> None:
    mid, lab_mid, an, grid, ids = _sagittal(0.0)
    side, lab_side, *_ = _sagittal(18.0)
    # the thecal sac (CSF: bright on T2) is there at the midline and gone 18 mm off it
    assert _canal_signal(mid, an, grid, 0) > 2 * _canal_signal(side, an, grid, 0)
    # vertebral bodies are shallower off the midline (kidney-shaped axial section)
    assert (lab_side == ids["L3"]).sum() < 0.95 * (lab_mid == ids["L3"]).sum()
    # CSF is dark on T1 and bright on T2 at the midline
    assert _canal_signal(mid, an, grid, 0) > 2 * _canal_signal(mid, an, grid, 1)


def test_every_drawn_structure_gets_its_label_and_discs_sit_between_bodies() -> None:
    img, lab, an, grid, ids = _sagittal(0.0)
    for name in ("L1", "L1-L2", "L2", "L4-L5", "L5"):
        assert (lab == ids[name]).sum() > 20, name
    rows = {name: np.nonzero(lab == ids[name])[0].mean() for name in ("L4", "L4-L5", "L5")}
    assert rows["L4"] < rows["L4-L5"] < rows["L5"]  # rows run head -> feet


def test_degenerated_disc_is_darker_on_t2() -> None:
    normal, lab, _, _, ids = _sagittal(0.0)
    worn, lab_w, *_ = _sagittal(0.0, {"L3-L4": DiscLook(degeneration=1.0)})
    m, mw = lab == ids["L3-L4"], lab_w == ids["L3-L4"]
    assert worn[0][mw].mean() < 0.7 * normal[0][m].mean()
    assert mw.sum() < m.sum()  # and thinner
