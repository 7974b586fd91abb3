"""``spine-kp review``: correct predictions in the browser; the reviewed studies become ``REVIEWED.json``.

Scans ROOT once, reads the predictions (and the ground truth), replays the journal beside ``--out``, binds ``--host``
(default 127.0.0.1; ``--port 0`` picks a free port) and prints one line, ``review: http://HOST:PORT/?token=TOKEN``,
then the number of studies, before serving until Ctrl-C or SIGTERM. Every change is journalled before the page hears
back, so killing the server loses nothing. Nothing under ROOT and none of the input files is ever written.

Needs the ``review`` extra (Starlette, uvicorn): ``pip install -e ".[review]"``.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
from pathlib import Path

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM  # numpy only

    parser.add_argument("root", metavar="ROOT", help="folder holding the DICOM studies (any depth), never written")
    parser.add_argument("--predictions", required=True, metavar="PRED.json", help="predictions of spine-kp predict")
    parser.add_argument(
        "--out",
        required=True,
        metavar="REVIEWED.json",
        help="the reviewed studies (competition format); its journal REVIEWED.journal.jsonl lies beside it",
    )
    parser.add_argument("--annotations", metavar="GT.json", help="ground truth, drawn beside the predictions")
    parser.add_argument(
        "--schema", metavar="SCHEMA", help="schema YAML or packaged name (default: the one the predictions name)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument(
        "--radius",
        type=float,
        default=DEFAULT_RADIUS_MM,
        help=f"ground-truth circle in mm (default {DEFAULT_RADIUS_MM:g})",
    )


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an --out (or its journal) that would replace an input or lie inside ROOT."""
    from spine_kp.errors import UserError
    from spine_kp.io.atomic import check_writable
    from spine_kp.io.output_guard import refuse_same_paths
    from spine_kp.review.journal import journal_path

    if not Path(args.root).is_dir():
        raise UserError(f"ROOT {args.root}: not a folder")
    if not args.radius > 0:
        raise UserError(f"--radius must be positive, got {args.radius}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0 (a free port) to 65535, got {args.port}")
    journal = journal_path(args.out)
    refuse_same_paths(
        {"--out": args.out, "the journal of --out": journal},
        {"--predictions": args.predictions, "--annotations": args.annotations},
    )
    root = Path(args.root).resolve()
    for flag, path in (("--out", Path(args.out)), ("the journal of --out", journal)):
        if root == path.resolve() or root in path.resolve().parents:
            raise UserError(
                f"{flag} {path} lies inside ROOT {args.root}, which review never writes: choose another path"
            )
    check_writable(args.out)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``; connections wait in its backlog until the server accepts them."""
    from spine_kp.errors import UserError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    sock.listen(128)
    return sock


def run(args: argparse.Namespace) -> int:
    from spine_kp.errors import UserError

    try:
        import uvicorn

        from spine_kp.review.app import create_app
    except ImportError as exc:
        raise UserError(
            f"spine-kp review needs the review extra ({exc.name} is missing): pip install 'spine_kp[review]'"
        ) from None
    from spine_kp.io.text import write_escaped
    from spine_kp.review.session import open_session

    _check_paths(args)
    session = open_session(args.root, args.predictions, args.out, args.annotations, args.schema, args.radius)
    try:
        for line in session.warnings:
            write_escaped(sys.stderr, f"warning: {line}\n")
        if args.host not in LOOPBACK:
            write_escaped(
                sys.stderr, f"warning: --host {args.host}: anyone who can reach it and has the token can edit\n"
            )
        sock = _bind(args.host, args.port)
        token = secrets.token_urlsafe(16)
        host, port = args.host, sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        states = [st.state for st in session.studies.values()]
        print(f"review: http://{shown}:{port}/?token={token}", flush=True)
        print(
            f"review: {len(states)} studies ({states.count('reviewed')} reviewed, {states.count('skipped')} skipped); "
            f"writes {args.out}",
            flush=True,
        )
        server = uvicorn.Server(uvicorn.Config(create_app(session, token), log_level="warning", lifespan="off"))
        server.run(sockets=[sock])  # until Ctrl-C or SIGTERM
    finally:
        session.close()
    return 0
