"""``spine-kp`` entry point.

Each subcommand lives in its own module ``spine_kp.cli.<name>`` exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``spine-kp inspect`` does not
pay for importing torch.

Errors: a mistake the user can fix (a :class:`spine_kp.errors.UserError`, a usage mistake, or a missing, unreadable
or unwritable path given on the command line) is one ``error: ...`` line on stderr and exit status 2; ``--debug``
(before or after the command) shows the traceback instead. Anything else is a bug and keeps its traceback. Ctrl-C
exits with 130.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path
from typing import NoReturn

from spine_kp.errors import UserError

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("spine_kp.cli.synth", "write phantom lumbar MRI studies (DICOM) + annotations.json"),
    "inspect": ("spine_kp.cli.inspect", "show which series/slice the loader picks for each study"),
    "evaluate": ("spine_kp.cli.evaluate", "score predictions against annotations with the 8 mm rules"),
    "models": ("spine_kp.cli.models", "list (and check) registered backbones and decoders"),
    "pretrain": ("spine_kp.cli.pretrain", "train a general checkpoint on domain-randomised phantoms (for --init)"),
    "pretrain-stage": (
        "spine_kp.cli.pretrain_stage",
        "train the crop grading stage alone on randomised phantoms (for grade_stage.init)",
    ),
    "train": ("spine_kp.cli.train", "train a landmark + grading model under PyTorch Lightning"),
    "predict": ("spine_kp.cli.predict", "batch-predict a folder of DICOM studies to competition JSON"),
    "export": ("spine_kp.cli.export", "export a checkpoint to ONNX (for predict --onnx, without torch)"),
    "card": ("spine_kp.cli.card", "print a model's card (settings a runtime reads) of a checkpoint or ONNX as YAML"),
    "ensemble": ("spine_kp.cli.ensemble", "join checkpoints (e.g. CV folds) into one file that predicts their mean"),
    "review": (
        "spine_kp.cli.review",
        "correct predictions in the browser; reviewed studies become training labels",
    ),
    "demo": ("spine_kp.cli.demo", "synth -> train -> predict -> evaluate on phantom studies"),
}


DEBUG_HELP = "show the full traceback of an error instead of one error line"


class UsageError(UserError):
    """A command line argparse rejects (missing or unknown option, a value of the wrong type)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage mistakes raise :class:`UsageError` (one ``error:`` line) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="spine-kp", description="Lumbar spine MRI landmarks and grading.")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # SUPPRESS: the subcommand's default must not overwrite a --debug given before the command
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        if name == wanted:  # only the running command's module is imported
            importlib.import_module(module).add_arguments(p)
    return parser


# OSErrors that are the user's to fix when they name a path given on the command line; elsewhere they are bugs
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
_USER_ERRNOS = {errno.EROFS, errno.ENOSPC}  # read-only file system, disk full


def _user_paths(args: argparse.Namespace) -> list[Path]:
    """Every string given on the command line (options, positionals, config overrides) as an absolute path."""
    values: list[str] = []
    for value in vars(args).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        values += [os.fspath(v) for v in items if isinstance(v, (str, os.PathLike)) and os.fspath(v)]
    return [Path(os.path.abspath(v)) for v in values]


def _user_path_of(exc: OSError, args: argparse.Namespace | None) -> str | None:
    """The path of ``exc`` when it is a user-given path or inside one (a folder), else None.

    A folder above a user-given path counts only for the errors of creating or writing into it (a file where a
    folder should be, no permission, a read-only or full disk): a missing or mistyped folder above is never the
    user's path, so such an error is a bug and keeps its traceback.
    """
    if args is None or not (isinstance(exc, _USER_OS_ERRORS) or exc.errno in _USER_ERRNOS):
        return None
    above_ok = not isinstance(exc, (FileNotFoundError, IsADirectoryError))
    given = _user_paths(args)
    for name in (exc.filename, exc.filename2):
        if not isinstance(name, (str, bytes, os.PathLike)):
            continue
        path = Path(os.path.abspath(os.fsdecode(name)))
        if any(path == p or p in path.parents or (above_ok and path in p.parents) for p in given):
            return os.fsdecode(name)
    return None


def _os_error_line(exc: OSError, name: str) -> str:
    if isinstance(exc, FileExistsError) and Path(name).exists() and not Path(name).is_dir():
        return f"{name}: is a file, not a folder"
    if isinstance(exc, IsADirectoryError):
        return f"{name}: is a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return f"{name}: not a folder (it, or a folder above it, is a file)"
    if isinstance(exc, FileNotFoundError):
        return f"{name}: no such file or folder"
    if isinstance(exc, PermissionError):
        return f"{name}: permission denied"
    return f"{name}: {exc.strerror or exc}"


def _error(message: str) -> int:
    """Print ``error: message`` as exactly one line on stderr; the exit status of a user mistake."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"error: {text}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # until parsed, so that a usage error honours it as well
    args: argparse.Namespace | None = None
    try:
        parser = build_parser(argv)
        args, extra = parser.parse_known_args(argv)
        debug = bool(args.debug)
        if not args.command:
            parser.print_help()
            return 2
        module = importlib.import_module(COMMANDS[args.command][0])
        # Commands that take config overrides (--model.backbone x) receive the unparsed rest; others reject it.
        if getattr(module, "ACCEPTS_OVERRIDES", False):
            args.overrides = extra
        elif extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see spine-kp {args.command} --help)")
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if debug:
            raise
        return _error(str(exc) or type(exc).__name__)
    except OSError as exc:
        name = _user_path_of(exc, args)
        if debug or name is None:
            raise
        return _error(_os_error_line(exc, name))


if __name__ == "__main__":
    sys.exit(main())
