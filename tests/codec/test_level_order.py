from __future__ import annotations

import numpy as np
import pytest
import torch

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import (
    LevelOrderConfig,
    decode_batch,
    decode_level_order,
    heatmap_candidates,
    order_violations,
)


def _spine(k: int = 12, step: float = 9.0, tilt_deg: float = 12.0) -> np.ndarray:
    """(K, 2) points down a gently curved, tilted spine, cranio-caudal, in pixels."""
    t = np.arange(k) * step
    a = np.deg2rad(tilt_deg)
    x = 60 + t * np.sin(a) + 0.002 * (t - t.mean()) ** 2
    y = 10 + t * np.cos(a)
    return np.stack([x, y], axis=1)


def test_dp_recovers_order_where_argmax_picks_neighbours():
    truth = _spine()
    k = len(truth)
    rng = np.random.default_rng(0)
    cand = np.zeros((k, 3, 2))
    scores = np.zeros((k, 3))
    for i in range(k):
        cand[i, 0] = truth[i]
        cand[i, 1] = truth[min(k - 1, i + 1)]  # the next level looks like this one ...
        cand[i, 2] = truth[i] + rng.normal(0, 30, 2)
        scores[i] = [0.6, 0.5, 0.05]
    for i in (3, 4, 7):  # ... and in three channels it even wins the argmax
        scores[i] = [0.5, 0.62, 0.05]
    argmax = cand[np.arange(k), scores.argmax(1)]
    assert order_violations(argmax) > 0  # duplicated positions break the order
    choice = decode_level_order(cand, scores)
    assert (choice == 0).all()
    assert order_violations(cand[np.arange(k), choice]) == 0


def test_dp_fixes_shuffled_channels_that_argmax_keeps():
    truth = _spine()
    k = len(truth)
    cand = np.stack([truth, truth[::-1]], axis=1)  # candidate 1 of channel i is the mirror level
    scores = np.tile([0.55, 0.6], (k, 1))  # argmax prefers the shuffled (reversed) assignment everywhere ...
    scores[:3] = [0.9, 0.1]  # ... except at the top, which anchors the direction
    argmax = cand[np.arange(k), scores.argmax(1)]
    assert order_violations(argmax) > 0
    choice = decode_level_order(cand, scores)
    assert np.allclose(cand[np.arange(k), choice], truth)


def test_dp_keeps_clean_argmax():
    truth = _spine()
    cand = np.stack([truth, truth + 25.0], axis=1)
    scores = np.tile([0.9, 0.3], (len(truth), 1))
    assert (decode_level_order(cand, scores) == 0).all()


def _heatmaps(points: np.ndarray, codec: HeatmapCodec) -> np.ndarray:
    maps, _ = codec.encode(points, np.ones(len(points), bool))
    return maps


def test_decode_batch_on_ambiguous_heatmaps():
    codec = HeatmapCodec((128, 128), stride=1, sigma=2.0)
    truth = _spine()
    maps = _heatmaps(truth, codec)
    ambiguous = maps.copy()
    for i in (2, 5, 8):  # a stronger copy of the next level in these channels
        ambiguous[i] = np.maximum(0.7 * maps[i], maps[i + 1])
    hm = torch.from_numpy(ambiguous)[None]
    argmax_xy, _ = codec.decode(hm)
    dp_xy, dp_scores = decode_batch(hm, codec, LevelOrderConfig())
    err_argmax = np.linalg.norm(argmax_xy[0].numpy() - truth, axis=1)
    err_dp = np.linalg.norm(dp_xy[0].numpy() - truth, axis=1)
    assert err_argmax[[2, 5, 8]].min() > 5  # argmax jumps to the neighbour level
    assert err_dp.max() < 0.5  # DP stays on the right levels, sub-pixel
    assert order_violations(dp_xy[0].numpy()) == 0
    assert dp_scores.shape == (1, len(truth)) and float(dp_scores.min()) > 0.6
    off_xy, _ = decode_batch(hm, codec, LevelOrderConfig(enabled=False))
    assert torch.allclose(off_xy, argmax_xy)


def test_candidates_are_local_maxima_best_first():
    codec = HeatmapCodec((64, 64), stride=2, sigma=1.5)
    pts = np.array([[10.0, 20.0], [40.0, 44.0]])
    maps = _heatmaps(pts, codec)
    two_peaks = np.maximum(maps[0], 0.5 * maps[1])[None, None]
    xy, sc = heatmap_candidates(torch.from_numpy(two_peaks), codec, top_k=3)
    assert xy.shape == (1, 1, 3, 2) and sc.shape == (1, 1, 3)
    assert np.allclose(xy[0, 0, 0].numpy(), pts[0], atol=0.1)
    assert np.allclose(xy[0, 0, 1].numpy(), pts[1], atol=0.1)
    assert abs(float(sc[0, 0, 1]) - 0.5) < 0.05


def test_refining_several_candidates_per_map_equals_one_at_a_time():
    for refine in ("dark", "soft_argmax"):
        codec = HeatmapCodec((64, 64), stride=2, sigma=1.5, refine=refine)
        maps = torch.from_numpy(_heatmaps(np.array([[10.3, 20.6], [40.2, 44.9]]), codec))  # (2, 32, 32)
        uv = torch.tensor([[[5.0, 10.0], [20.0, 22.0]], [[20.0, 22.0], [3.0, 3.0]]])  # (2, M=2, 2)
        together = codec.refine_cells(maps, uv)
        alone = torch.stack(
            [codec.refine_cells(maps[:, None].expand(2, 2, 32, 32)[:, j], uv[:, j]) for j in range(2)], 1
        )
        assert together.shape == (2, 2, 2)
        assert torch.allclose(together, alone, atol=1e-5), refine


def _candidates_of(points: np.ndarray, score: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2, 2) candidates: the point itself (scored ``score``) and a far decoy (scored 0.01)."""
    cand = np.stack([points, points + np.array([80.0, 0.0])], axis=1)
    scores = np.tile([score, 0.01], (len(points), 1))
    return cand, scores


def test_chain_drops_ends_outside_the_image_instead_of_shifting():
    # The image shows landmarks 2..11 only: channels 0 and 1 respond weakly on the two topmost visible
    # levels (the usual failure: "T12" on the topmost body in view), their own levels being above the image.
    truth = _spine()
    cand, scores = _candidates_of(truth)
    cand[0, 0], scores[0, 0] = truth[2], 0.04
    cand[1, 0], scores[1, 0] = truth[3], 0.03
    shifted = decode_level_order(cand, scores, LevelOrderConfig(absent_score=0.0))
    assert (shifted >= 0).all()  # without absent ends every channel must be placed
    choice = decode_level_order(cand, scores, LevelOrderConfig(absent_score=0.05))
    assert list(choice[:2]) == [-1, -1]
    assert (choice[2:] == 0).all()  # the visible levels keep their own peaks


def test_chain_keeps_weak_but_consistent_ends_and_never_drops_the_middle():
    truth = _spine()
    cand, scores = _candidates_of(truth)
    scores[0, 0] = scores[-1, 0] = 0.06  # weak ends at the right place and step: kept
    scores[5, 0] = 0.001  # a very weak middle level cannot be dropped (no gaps in a visible spine)
    choice = decode_level_order(cand, scores, LevelOrderConfig(absent_score=0.05))
    assert (choice >= 0).all()
    assert choice[0] == 0 and choice[-1] == 0


def test_the_caudal_end_has_its_own_absent_score():
    # A weak L5-S1 at its place, and a weak echo of the top level: with one score for both ends both are dropped; a
    # caudal score of 0 keeps the anchor (a series that always shows the sacrum) while the cranial end still goes.
    truth = _spine()
    cand, scores = _candidates_of(truth)
    scores[-1, 0] = 0.005
    cand[0, 0], scores[0, 0] = truth[1], 0.004
    both = decode_level_order(cand, scores, LevelOrderConfig(absent_score=0.2))
    assert both[0] == -1 and both[-1] == -1
    anchored = decode_level_order(cand, scores, LevelOrderConfig(absent_score=0.2, absent_score_caudal=0.0))
    assert anchored[0] == -1 and anchored[-1] == 0
    only_caudal = decode_level_order(cand, scores, LevelOrderConfig(absent_score=0.0, absent_score_caudal=0.2))
    assert only_caudal[0] >= 0 and only_caudal[-1] == -1
    assert LevelOrderConfig(absent_score=0.1).caudal_absent_score == 0.1
    with pytest.raises(ValueError, match="absent_score_caudal"):
        LevelOrderConfig(absent_score_caudal=1.5)


def test_decode_batch_marks_absent_ends_with_score_zero():
    codec = HeatmapCodec((160, 128), stride=1, sigma=2.0)
    truth = _spine()
    maps = _heatmaps(truth, codec)
    maps[0] = 0.04 * _heatmaps(truth[2:3], codec)[0]  # channel 0 only echoes a visible level, weakly
    xy, sc = decode_batch(torch.from_numpy(maps)[None], codec, LevelOrderConfig(absent_score=0.05))
    assert float(sc[0, 0]) == 0.0 and float(sc[0, 1:].min()) > 0.5
    assert np.linalg.norm(xy[0, 1:].numpy() - truth[1:], axis=1).max() < 0.5
    _, sc_off = decode_batch(torch.from_numpy(maps)[None], codec, LevelOrderConfig(absent_score=0.0))
    assert float(sc_off[0, 0]) > 0.0


def test_absent_score_is_validated():
    with pytest.raises(ValueError, match="absent_score"):
        LevelOrderConfig(absent_score=1.0)


def test_negative_peaks_of_an_untrained_network_decode():
    """Raw heatmaps of an early network can be negative everywhere: decoding must not fail on them."""
    truth = _spine()
    cand = truth[:, None, :] + np.array([[0.0, 0.0], [30.0, 0.0]])[None]  # (K, 2, 2): the truth and a decoy
    scores = np.tile([-0.001, -0.003], (len(truth), 1))
    scores[::3, 0] = 0.002  # mixed signs, as in a barely trained network
    choice = decode_level_order(cand, scores)
    assert choice.shape == (len(truth),) and order_violations(cand[np.arange(len(truth)), np.maximum(choice, 0)]) == 0


def test_a_weak_but_consistent_chain_is_kept_whole():
    # A barely trained network: every peak is low, yet they form a clean chain. The absent cost is relative to
    # the image's typical peak, so nothing is dropped (an absolute threshold would drop the whole chain).
    truth = _spine()
    cand, scores = _candidates_of(truth, score=0.02)
    scores[:, 1] = 0.0005
    choice = decode_level_order(cand, scores, LevelOrderConfig())
    assert (choice == 0).all()
