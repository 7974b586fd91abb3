"""Parameters and CPU latency of the registered networks; prints a markdown table.

Each registered backbone is measured with the ``unet`` decoder (default width, default schema heads), plus the
standalone stacked hourglass. Latency: batch 1, ``--size`` x ``--size`` single-channel input, eval mode, no grad,
``torch.set_num_threads(--threads)``, median of ``--runs`` forward passes after ``--warmup`` untimed ones.

    python scripts/bench_models.py                       # everything at 512x512 (takes a while)
    python scripts/bench_models.py --names resnet18 pvt_v2_b0 hourglass --size 256
    python scripts/bench_models.py --decoders            # also every decoder on the default backbone
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from spine_kp.models.net import NO_BACKBONE, ModelConfig, count_parameters, create_model
from spine_kp.models.registry import BACKBONES, DECODERS
from spine_kp.schema import load_schema


def _configs(names: set[str] | None, decoders: bool) -> list[tuple[str, ModelConfig]]:
    """(label, config) pairs to measure: backbones + unet, the standalone hourglass, optionally all decoders."""

    def wanted(name: str) -> bool:
        return names is None or name in names

    out = [(f"{n} + unet", ModelConfig(backbone=n, decoder="unet")) for n in BACKBONES.names() if wanted(n)]
    done = {cfg.backbone for _, cfg in out}
    default = ModelConfig().backbone
    for entry in DECODERS.entries():
        if not wanted(entry.name):
            continue
        if entry.meta.get("standalone"):
            out.append((f"{entry.name} (standalone)", ModelConfig(backbone=NO_BACKBONE[0], decoder=entry.name)))
        elif decoders and not (entry.name == "unet" and default in done):
            out.append((f"{default} + {entry.name}", ModelConfig(backbone=default, decoder=entry.name)))
    return out


def measure(cfg: ModelConfig, size: int, warmup: int, runs: int) -> tuple[int, float]:
    """Build ``cfg`` and return (parameter count, median forward latency in ms)."""
    net = create_model(cfg, load_schema()).eval()
    x = torch.randn(1, cfg.in_chans, size, size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            net(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return count_parameters(net), statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", help="only these backbone / decoder names")
    parser.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decoders", action="store_true", help="also every decoder on the default backbone")
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
    print("| network | family | source | params (M) | CPU latency (ms) |")
    print("|---|---|---|---:|---:|")
    failed = 0
    for label, cfg in configs:
        meta = (DECODERS.get(cfg.decoder) if cfg.backbone in NO_BACKBONE else BACKBONES.get(cfg.backbone)).meta
        try:
            params, ms = measure(cfg, args.size, args.warmup, args.runs)
            cells = f"{params / 1e6:.2f} | {ms:.0f}"
        except Exception as exc:  # report and go on: one broken network must not hide the rest
            failed += 1
            cells = f"- | FAIL: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        print(f"| {label} | {meta.get('family', '')} | {meta.get('source', '')} | {cells} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
