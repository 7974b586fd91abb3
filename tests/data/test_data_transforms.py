"""Augmentation: keypoints move exactly with the pixels, stay on their structure, never flip vertically."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from data_phantoms import BODY, DISC, spine_phantom
from scipy import ndimage

from spine_kp.data.transforms import AugmentConfig, Augmenter, sample_spatial
from spine_kp.data.transforms_geometric import SpatialTransform, flip_columns
from spine_kp.synth import SynthOptions, make_study

SIZE = (128, 128)
OFF = AugmentConfig(
    flip_prob=0.0,
    affine_prob=0.0,
    elastic_prob=0.0,
    crop_prob=0.0,
    bias_prob=0.0,
    gamma_prob=0.0,
    contrast_prob=0.0,
    blur_prob=0.0,
    noise_prob=0.0,
)
STRONG_AFFINE = replace(OFF, flip_prob=0.5, affine_prob=1.0, rotate_deg=30.0, shear_deg=10.0, crop_prob=0.5)
ELASTIC = replace(STRONG_AFFINE, elastic_prob=1.0, elastic_std_frac=0.02)


def blob(xy: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    yy, xx = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    return np.exp(-((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2) / (2 * sigma**2))[None].astype(np.float32)


def local_centroid(img: np.ndarray, rc: tuple[int, int], radius: int = 10) -> np.ndarray:
    r, c = rc
    win = img[r - radius : r + radius + 1, c - radius : c + radius + 1]
    yy, xx = np.mgrid[r - radius : r + radius + 1, c - radius : c + radius + 1]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


def dot_errors(cfg: AugmentConfig, seed: int, trials: int = 30) -> tuple[list[float], list[float], list[float]]:
    """Per trial: argmax error (max over axes), centroid error, and residual |S(u) - p| of the moved point."""
    rng = np.random.default_rng(seed)
    argmax_err, centroid_err, residual = [], [], []
    while len(argmax_err) < trials:
        p = rng.uniform(35, 93, 2)
        st = sample_spatial(rng, cfg, SIZE, p[None], np.array([True]))
        q = st.move_points(p[None])[0]
        if not (14 < q[0] < SIZE[1] - 15 and 14 < q[1] < SIZE[0] - 15):
            continue  # keep the whole blob inside the image
        out = st.warp(blob(p))[0]
        rc = np.unravel_index(int(out.argmax()), out.shape)
        argmax_err.append(float(np.abs(np.array([rc[1], rc[0]]) - q).max()))
        centroid_err.append(float(np.hypot(*(local_centroid(out, rc) - q))))
        src = st.source_coords()  # input position sampled at the moved point: must be p itself
        s_q = [ndimage.map_coordinates(src[c], [[q[1]], [q[0]]], order=1)[0] for c in range(2)]
        residual.append(float(np.hypot(*(np.array(s_q) - p))))
    return argmax_err, centroid_err, residual


def test_affine_moves_a_dot_exactly() -> None:
    argmax_err, centroid_err, residual = dot_errors(STRONG_AFFINE, seed=1)
    assert max(argmax_err) <= 1.0  # the brightest pixel is a neighbour of the moved point ...
    assert max(centroid_err) < 0.1  # ... and the blob's centre is the moved point to a tenth of a pixel
    assert max(residual) < 1e-6


def test_elastic_moves_a_dot_with_the_pixels() -> None:
    argmax_err, centroid_err, residual = dot_errors(ELASTIC, seed=2)
    assert max(residual) < 1e-3  # the point is where the pixels under it went (fixed point solved)
    assert max(argmax_err) <= 1.0
    assert max(centroid_err) < 0.7  # the blob itself is deformed, so its centroid shifts a little


def test_elastic_field_is_smooth_and_invertible() -> None:
    st = sample_spatial(np.random.default_rng(3), replace(OFF, elastic_prob=1.0, elastic_std_frac=0.2), SIZE,
                        np.zeros((1, 2)), np.ones(1, bool))  # fmt: skip
    assert st.displacement is not None and np.abs(st.displacement).max() > 1.0
    grads = [g for comp in st.displacement for g in np.gradient(comp)]
    assert np.sqrt(sum(g**2 for g in grads)).max() <= 0.5 + 1e-4  # capped: u + d(u) stays one-to-one


def test_flip_mirrors_columns_only() -> None:
    img, _, kps, _ = spine_phantom(size=SIZE[0])
    out, moved, vis = Augmenter(replace(OFF, flip_prob=1.0))(np.random.default_rng(0), torch.from_numpy(img), kps,
                                                            np.ones(len(kps), bool))  # fmt: skip
    np.testing.assert_allclose(out.numpy(), img[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(moved[:, 0], SIZE[1] - 1 - kps[:, 0], atol=1e-5)
    np.testing.assert_allclose(moved[:, 1], kps[:, 1], atol=1e-5)
    assert vis.all()
    np.testing.assert_allclose(flip_columns(10) @ [2.0, 5.0, 1.0], [7.0, 5.0, 1.0])


def test_cranio_caudal_order_is_never_reversed() -> None:
    _, _, kps, _ = spine_phantom(size=SIZE[0])
    aug = Augmenter(AugmentConfig())  # defaults: every step on
    rng = np.random.default_rng(4)
    img = torch.randn((1, *SIZE))
    for _ in range(40):
        _, moved, vis = aug(rng, img, kps, np.ones(len(kps), bool))
        y = moved[vis, 1]
        assert (np.diff(y) > 0).all(), "levels must stay in cranio-caudal (top to bottom) order"


def test_points_leaving_the_image_become_invisible() -> None:
    _, _, kps, _ = spine_phantom(size=SIZE[0])
    aug = Augmenter(replace(OFF, affine_prob=1.0, translate_frac=0.6))
    rng = np.random.default_rng(5)
    lost = 0
    for _ in range(20):
        _, moved, vis = aug(rng, torch.zeros((1, *SIZE)), kps, np.ones(len(kps), bool))
        inside = (moved >= -0.5).all(1) & (moved[:, 0] <= SIZE[1] - 0.5) & (moved[:, 1] <= SIZE[0] - 0.5)
        assert (vis <= inside).all()
        assert (moved[~vis] == 0).all()
        lost += int((~vis).sum())
    assert lost > 0


def test_fov_cut_blanks_outside_the_window_and_hides_its_landmarks() -> None:
    _, _, kps, _ = spine_phantom(size=SIZE[0])
    aug = Augmenter(replace(OFF, fov_cut_prob=1.0, fov_cut_frac=(0.4, 0.6)))
    rng = np.random.default_rng(8)
    img = torch.rand((1, *SIZE)) + 1.0
    hidden = kept = 0
    for _ in range(20):
        out, moved, vis = aug(rng, img, kps, np.ones(len(kps), bool))
        blank = out[0] == float(img.min())
        rows, cols = np.nonzero(~blank.numpy())
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        assert 0.35 * SIZE[0] <= bottom - top + 1 <= 0.65 * SIZE[0]
        # inside the window the image is untouched, and so are the visible points (no zoom, no shift)
        torch.testing.assert_close(
            out[0, top : bottom + 1, left : right + 1], img[0, top : bottom + 1, left : right + 1]
        )
        np.testing.assert_allclose(moved[vis], kps[vis], atol=1e-4)
        inside = (kps[:, 0] >= left - 0.5) & (kps[:, 0] <= right + 0.5) & (kps[:, 1] >= top - 0.5)
        inside &= kps[:, 1] <= bottom + 0.5
        assert (vis == inside).all()
        hidden += int((~vis).sum())
        kept += int(vis.sum())
    assert hidden > 0 and kept > 0


def test_fov_cut_off_by_default_and_validated() -> None:
    assert AugmentConfig().fov_cut_prob == 0.0
    with pytest.raises(ValueError, match="fov_cut_frac"):
        AugmentConfig(fov_cut_frac=(0.0, 1.0))


def test_crop_keeps_visible_keypoints_and_zooms_in() -> None:
    _, _, kps, _ = spine_phantom(size=SIZE[0])
    visible = np.ones(len(kps), bool)
    visible[0] = False  # an invisible point does not constrain the crop
    aug = Augmenter(replace(OFF, crop_prob=1.0, crop_margin_frac=(0.02, 0.05), crop_max_zoom=3.0))
    rng = np.random.default_rng(6)
    for _ in range(10):
        _, moved, vis = aug(rng, torch.zeros((1, *SIZE)), kps, visible)
        assert (vis == visible).all()
        span = np.ptp(moved[vis], axis=0)
        assert span[1] > 1.05 * np.ptp(kps[visible], axis=0)[1]


@pytest.mark.parametrize("seed", range(4))
def test_augmented_landmarks_stay_on_their_structure(seed: int) -> None:
    img, label, kps, kinds = spine_phantom(size=SIZE[0], seed=seed)
    # every landmark starts on its own structure
    assert (label[np.round(kps[:, 1]).astype(int), np.round(kps[:, 0]).astype(int)] == kinds).all()
    # elastic stronger than the default so that ignoring the field would put points off their structure
    cfg = replace(AugmentConfig(), affine_prob=1.0, elastic_prob=0.7, elastic_std_frac=0.03, crop_prob=0.5)
    rng = np.random.default_rng(100 + seed)
    checked = 0
    for _ in range(10):
        st = sample_spatial(rng, cfg, SIZE, kps, np.ones(len(kps), bool))
        mask = st.warp(label[None], mode="nearest", fill=0)[0]  # same transform, nearest for labels
        moved = st.move_points(kps)
        vis = st.inside(moved)
        for (x, y), kind in zip(moved[vis], kinds[vis]):
            r, c = int(round(y)), int(round(x))
            hood = mask[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            assert (hood == kind).any(), f"{'disc' if kind == DISC else 'body'} point ({x:.1f}, {y:.1f}) off its label"
            checked += 1
        # a body point is never moved onto a disc and vice versa
        assert BODY in mask and DISC in mask
    assert checked > 50


def test_intensity_is_seeded_and_keeps_statistics() -> None:
    img, _, kps, _ = spine_phantom(size=SIZE[0])
    cfg = replace(OFF, bias_prob=1.0, gamma_prob=1.0, contrast_prob=1.0, blur_prob=1.0, noise_prob=1.0)
    aug = Augmenter(cfg)
    vis = np.ones(len(kps), bool)
    a, ka, _ = aug(np.random.default_rng(7), torch.from_numpy(img), kps, vis)
    b, _, _ = aug(np.random.default_rng(7), torch.from_numpy(img), kps, vis)
    c, _, _ = aug(np.random.default_rng(8), torch.from_numpy(img), kps, vis)
    assert a.shape == (1, *SIZE) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # the input's statistics are kept (the predictor's normalization makes them mean 0, std 1)
    assert abs(float(a.mean()) - img.mean()) < 1e-4 and abs(float(a.std()) - img.std(ddof=1)) < 1e-3
    assert not torch.allclose(a, torch.from_numpy(img), atol=1e-2)
    np.testing.assert_allclose(ka, kps, atol=1e-5)  # intensity never moves points


def test_disabled_and_invalid_configs() -> None:
    img = torch.randn(1, *SIZE)
    kps, vis = np.array([[10.0, 20.0]]), np.array([True])
    out, moved, v = Augmenter(replace(AugmentConfig(), enabled=False))(np.random.default_rng(0), img, kps, vis)
    assert out is img and moved is kps and v is vis
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, 0.8))


def test_warp_keeps_type_and_fills_background() -> None:
    st = SpatialTransform(matrix=np.array([[1.0, 0, 40.0], [0, 1.0, 0], [0, 0, 1.0]]), size=SIZE)
    img = np.full((2, *SIZE), 3.0, np.float32)
    img[:, :, :5] = -2.0  # background level
    out = st.warp(img)
    assert isinstance(out, np.ndarray) and out.shape == (2, *SIZE)
    assert (out[:, :, :40] == -2.0).all() and np.allclose(out[:, :, 50:], 3.0)
    lab = st.warp(np.ones((1, *SIZE), np.int64), mode="nearest", fill=0)
    assert lab.dtype == np.int64 and set(np.unique(lab)) == {0, 1}
    np.testing.assert_allclose(st.move_points(np.array([[1.0, 2.0]])), [[41.0, 2.0]])


def test_phantom_landmarks_stay_on_their_own_structure() -> None:
    """The synth phantom's label map of the annotated slice: each landmark must stay on ITS structure."""
    study = make_study(11, 0, options=SynthOptions(size=128, axial=False, tricky=False))
    t2 = study.get("t2_sag")
    label = t2.labels[study.annotated_index].astype(np.int64)  # (H, W), one label per vertebra / disc
    ann = study.record.primary
    kps = np.array([p.coord for p in ann.points], np.float64)
    ids = np.array([study.label_id(p.identification) for p in ann.points])
    size = label.shape
    cfg = replace(AugmentConfig(), affine_prob=1.0, elastic_prob=0.7, elastic_std_frac=0.03, crop_prob=0.5)
    rng = np.random.default_rng(12)
    checked = 0
    for trial in range(12):
        st = sample_spatial(rng, cfg, size, kps, np.ones(len(kps), bool))
        mask = label[None] if trial == 0 else st.warp(label[None], mode="nearest", fill=0)
        moved = kps if trial == 0 else st.move_points(kps)  # trial 0: the untouched phantom must pass too
        for (x, y), lab, p in zip(moved, ids, ann.points):
            if not st.inside(np.array([[x, y]]))[0]:
                continue
            r, c = int(round(y)), int(round(x))
            hood = mask[0, max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            assert (hood == lab).any(), f"trial {trial}: {p.identification} at ({x:.1f}, {y:.1f}) left its structure"
            checked += 1
    assert checked > 100


def test_fov_cut_can_keep_the_caudal_anchor() -> None:
    """With fov_cut_keep_caudal=1 every cut keeps the last landmark (the sacral end) and a margin below it."""
    _, _, kps, _ = spine_phantom(size=SIZE[0])
    cfg = replace(OFF, fov_cut_prob=1.0, fov_cut_frac=(0.4, 0.6), fov_cut_keep_caudal=1.0, fov_cut_caudal_margin=0.1)
    aug = Augmenter(cfg)
    rng = np.random.default_rng(9)
    img = torch.rand((1, *SIZE)) + 1.0
    top_cut = 0
    for _ in range(30):
        out, _, vis = aug(rng, img, kps, np.ones(len(kps), bool))
        assert vis[-1], "the most caudal landmark must stay in view"
        rows = np.nonzero((out[0] != float(img.min())).any(dim=1).numpy())[0]
        assert rows.max() >= min(SIZE[0] - 1, kps[-1, 1] + 0.1 * SIZE[0] - 1)
        top_cut += int(not vis[0])
    assert top_cut > 0  # the cranial end is still cut away
