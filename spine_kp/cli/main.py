"""``spine-kp`` entry point.

Each subcommand lives in its own module ``spine_kp.cli.<name>`` exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``spine-kp inspect`` does not
pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("spine_kp.cli.synth", "write phantom lumbar MRI studies (DICOM) + annotations.json"),
    "inspect": ("spine_kp.cli.inspect", "show which series/slice the loader picks for each study"),
    "evaluate": ("spine_kp.cli.evaluate", "score predictions against annotations with the 8 mm rules"),
    "models": ("spine_kp.cli.models", "list (and check) registered backbones and decoders"),
    "pretrain": ("spine_kp.cli.pretrain", "train a general checkpoint on domain-randomised phantoms (for --init)"),
    "train": ("spine_kp.cli.train", "train a landmark + grading model under PyTorch Lightning"),
    "predict": ("spine_kp.cli.predict", "batch-predict a folder of DICOM studies to competition JSON"),
    "demo": ("spine_kp.cli.demo", "synth -> train -> predict -> evaluate on phantom studies"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spine-kp", description="Lumbar spine MRI landmarks and grading.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the running command's module is imported
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    # Commands that take config overrides (--model.backbone x) receive the unparsed rest; others reject it.
    if getattr(module, "ACCEPTS_OVERRIDES", False):
        args.overrides = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
