"""Parameters and CPU latency of the registered networks; prints a markdown table.

Each registered backbone is measured with the ``unet`` decoder (default width, default schema heads), plus the
standalone stacked hourglass. Latency: batch 1, ``--size`` x ``--size`` single-channel input, eval mode, no grad,
``torch.set_num_threads(--threads)``, median (and minimum) of ``--runs`` forward passes after ``--warmup``
untimed ones.

    python scripts/bench_models.py                       # everything at 512x512 (takes a while)
    python scripts/bench_models.py --names resnet18 pvt_v2_b0 hourglass --size 256
    python scripts/bench_models.py --decoders            # also every decoder on the default backbone
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import torch

from spine_kp.models.net import NO_BACKBONE, ModelConfig, count_parameters, create_model
from spine_kp.models.registry import BACKBONES, DECODERS
from spine_kp.schema import load_schema


def _configs(names: set[str] | None, decoders: bool) -> list[tuple[str, ModelConfig, dict[str, Any]]]:
    """(label, config, registry meta of the part that varies) to measure: backbones + unet, the standalone
    hourglass, optionally every decoder on the default backbone."""

    def wanted(name: str) -> bool:
        return names is None or name in names

    out = [
        (f"{e.name} + unet", ModelConfig(backbone=e.name, decoder="unet"), e.meta)
        for e in BACKBONES.entries()
        if wanted(e.name)
    ]
    done = {cfg.backbone for _, cfg, _ in out}
    default = ModelConfig().backbone
    for entry in DECODERS.entries():
        if entry.meta.get("standalone") and (decoders or wanted(entry.name)):
            cfg = ModelConfig(backbone=NO_BACKBONE[0], decoder=entry.name)
            out.append((f"{entry.name} (standalone)", cfg, entry.meta))
        elif decoders and not entry.meta.get("standalone") and not (entry.name == "unet" and default in done):
            out.append((f"{default} + {entry.name}", ModelConfig(backbone=default, decoder=entry.name), entry.meta))
    return out


def measure(cfg: ModelConfig, size: int, warmup: int, runs: int) -> tuple[int, float, float]:
    """Build ``cfg`` and return (parameter count, median and minimum forward latency in ms)."""
    net = create_model(cfg, load_schema()).eval()
    x = torch.randn(1, cfg.in_chans, size, size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            net(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return count_parameters(net), statistics.median(times), min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", help="only these backbones (and standalone decoders such as hourglass)")
    parser.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--decoders", action="store_true", help="also every decoder on the default backbone (regardless of --names)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = set(args.names) if args.names else None
    configs = _configs(names, args.decoders)
    if not configs:
        print(f"bench_models: nothing matches {sorted(names or [])}", file=sys.stderr)
        return 2
    print(
        f"CPU latency, batch 1, 1x{args.size}x{args.size}, {args.threads} threads, torch {torch.__version__}, "
        f"median of {args.runs} after {args.warmup} warm-up\n"
    )
    # The minimum is the better estimate on a shared machine (other processes only ever add time).
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average at start: {load}\n")
    print("| network | family | source | params (M) | CPU median (ms) | CPU min (ms) |")
    print("|---|---|---|---:|---:|---:|")
    failed = 0
    for label, cfg, meta in configs:
        try:
            params, median, fastest = measure(cfg, args.size, args.warmup, args.runs)
            cells = f"{params / 1e6:.2f} | {median:.0f} | {fastest:.0f}"
        except Exception as exc:  # report and go on: one broken network must not hide the rest
            failed += 1
            cells = f"- | FAIL: {type(exc).__name__}: {str(exc).splitlines()[0][:80]} | -"
        print(f"| {label} | {meta.get('family', '')} | {meta.get('source', '')} | {cells} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
