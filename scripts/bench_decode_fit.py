"""Time of the decoding fit that ends every training: candidates found once against a full decode per setting.

Usage:
    python scripts/bench_decode_fit.py --checkpoint RUN/checkpoints/best.ckpt --data ROOT --annotations GT.json

The network runs once over the annotated slices of GT.json (as ``spine_kp.engine.decode_fit`` runs it); then every
setting of the fit's grid is decoded twice on the same heatmaps: through candidates found once (what the fit does)
and by a full decode per setting (what it did before). Prints both times, their ratio and whether the two agree on
every setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import numpy as np

from spine_kp.engine.annotated_slices import load_annotated_slices
from spine_kp.engine.decode_fit import FITTED, GRID, _decoder
from spine_kp.inference.network_outputs import decode_trained
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import scan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="data root holding the DICOM studies")
    ap.add_argument("--annotations", required=True, help="annotations of the studies whose slices are decoded")
    args = ap.parse_args(argv)
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    records = read_annotations(args.annotations, predictor.schema)
    loaded = load_annotated_slices(records, scan(args.data).studies, predictor.slices_needed(), "bench")
    slices = [slc for _, slc in loaded]
    heatmaps = []
    for i in range(0, len(slices), 8):
        images, _ = predictor.prepare(slices[i : i + 8])
        heatmaps.append(predictor.network.run(images)[0])
    hm, keep, base = np.concatenate(heatmaps), predictor.trained.landmarks, predictor.decode
    settings = [dataclasses.replace(base, **dict(zip(FITTED, v))) for v in itertools.product(*GRID.values())]
    t0 = time.perf_counter()
    decode = _decoder(hm, predictor.codec, base, keep)
    once = [decode(cfg) for cfg in settings]
    t1 = time.perf_counter()
    full = [decode_trained(hm, predictor.codec, cfg, keep) for cfg in settings]
    t2 = time.perf_counter()
    same = all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(once, full))
    print(f"{len(slices)} slices, {len(settings)} settings")
    print(f"candidates once:       {t1 - t0:8.2f} s")
    print(f"full decode each time: {t2 - t1:8.2f} s")
    print(f"ratio: {(t2 - t1) / max(t1 - t0, 1e-9):.1f}x faster; identical on every setting: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
