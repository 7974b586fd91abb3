"""Gain of level-order decoding: identification accuracy and mAP with and without the dynamic programme.

Usage:
    python scripts/bench_level_order.py --checkpoint RUN/checkpoints/best.ckpt --data HELDOUT_ROOT

HELDOUT_ROOT holds ``studies/`` and ``annotations.json`` the model did not train on. A landmark is correctly
identified when the prediction of that identification lies within r (8 mm) of its ground truth. Also reports the
order violations per study (consecutive landmarks not going caudally). Both rows decode the same heatmaps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from spine_kp.api import evaluate, load_predictor, predict_folder
from spine_kp.codec.level_order import order_violations
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="folder with studies/ and annotations.json")
    ap.add_argument("--radius", type=float, default=DEFAULT_RADIUS_MM)
    args = ap.parse_args()
    print("| decoding | identified within r | order violations / study | mAP | median mm | p95 mm |")
    print("|---|---|---|---|---|---|")
    for label, enabled in (("per-channel argmax", False), ("level-order DP", True)):
        predictor = load_predictor(args.checkpoint, level_order=enabled)
        run = predict_folder(Path(args.data) / "studies", predictor)
        ev = evaluate(run, Path(args.data) / "annotations.json", schema=predictor.schema, radius=args.radius)
        loc = ev.localization.overall
        viol = np.mean([order_violations(p.coords[predictor.trained.landmarks]) for p in run.predictions])
        print(f"| {label} | {loc.within_radius:.4f} | {viol:.3f} | {ev.map:.4f} | {loc.median:.2f} | {loc.p95:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
