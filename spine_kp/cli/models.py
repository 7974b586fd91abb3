"""``spine-kp models``: list the registered backbones and decoders; ``--check`` builds each and runs a forward pass.

Backbone rows count the parameters of the whole network (backbone + ``unet`` decoder at the default width,
default schema heads); decoder rows count the default backbone + that decoder (a standalone decoder such as
``hourglass`` is counted without a backbone).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="build each network and run a 1x1x128x128 forward pass")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.add_argument("--names", nargs="+", metavar="NAME", help="only these backbone/decoder names")
    p.add_argument("--size", type=int, default=128, help="input side for --check (default 128, divisible by 32)")
    p.add_argument("--schema", default=None, help="schema YAML (default: the packaged one)")


def _row(kind: str, name: str, meta: dict[str, Any], cfg: Any, schema: Any, check: bool, size: int) -> dict[str, Any]:
    import torch

    from spine_kp.models.net import count_parameters, create_model

    row: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "family": meta.get("family", ""),
        "source": meta.get("source", ""),
        "params_m": None,
    }
    start = time.perf_counter()
    try:
        if check:
            net = create_model(cfg, schema).eval()
            with torch.no_grad():
                out = net(torch.zeros(1, cfg.in_chans, size, size))
            expected = (1, schema.num_landmarks, size // cfg.output_stride, size // cfg.output_stride)
            if tuple(out["heatmaps"].shape) != expected or not torch.isfinite(out["heatmaps"]).all():
                raise RuntimeError(f"heatmaps {tuple(out['heatmaps'].shape)}, expected finite {expected}")
        else:
            try:  # parameters only: the meta device skips memory and weight init
                with torch.device("meta"):
                    net = create_model(cfg, schema)
            except Exception:  # some builders compute on tensors while constructing; build for real
                net = create_model(cfg, schema)
        row["params_m"] = round(count_parameters(net) / 1e6, 3)
        if check:
            row["status"] = "OK"
    except Exception as exc:  # one failing architecture must not hide the others
        row["status"] = "FAIL"
        row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def run(args: argparse.Namespace) -> int:
    from spine_kp.models.net import NO_BACKBONE, ModelConfig
    from spine_kp.models.registry import BACKBONES, DECODERS
    from spine_kp.schema import load_schema

    if args.size % 32:
        print(f"spine-kp models: --size {args.size} must be divisible by 32", file=sys.stderr)
        return 2
    schema = load_schema(args.schema)
    default = ModelConfig()
    wanted = set(args.names) if args.names else None
    unknown = (wanted or set()) - set(BACKBONES.names()) - set(DECODERS.names())
    if unknown:
        print(f"spine-kp models: unknown name(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    rows = []
    for entry in BACKBONES.entries():
        if wanted is None or entry.name in wanted:
            cfg = ModelConfig(backbone=entry.name, decoder="unet")
            rows.append(_row("backbone", entry.name, entry.meta, cfg, schema, args.check, args.size))
            _progress(rows[-1], args)
    for entry in DECODERS.entries():
        if wanted is None or entry.name in wanted:
            backbone = NO_BACKBONE[0] if entry.meta.get("standalone") else default.backbone
            cfg = ModelConfig(backbone=backbone, decoder=entry.name)
            rows.append(_row("decoder", entry.name, entry.meta, cfg, schema, args.check, args.size))
            _progress(rows[-1], args)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, args.check)
    failed = [r["name"] for r in rows if r.get("status") == "FAIL" or (not args.check and r["params_m"] is None)]
    if failed:
        print(f"{len(failed)} failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _progress(row: dict[str, Any], args: argparse.Namespace) -> None:
    if args.check and not args.json:
        status = row["status"] + (f"  {row['error']}" if "error" in row else "")
        print(f"{row['kind']:<8} {row['name']:<32} {status}", flush=True)


def _print_table(rows: list[dict[str, Any]], check: bool) -> None:
    head = ["kind", "name", "family", "source", "params (M)"] + (["check", "s"] if check else [])
    body = []
    for r in rows:
        params = f"{r['params_m']:.2f}" if r["params_m"] is not None else "-"
        cells = [r["kind"], r["name"], str(r["family"]), str(r["source"]), params]
        if check:
            cells += [r["status"], f"{r['seconds']:.1f}"]
        body.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for cells in body:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
