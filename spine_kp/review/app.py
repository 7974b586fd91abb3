"""The web app of ``spine-kp review``: a Starlette application over one :class:`~spine_kp.review.session.ReviewSession`.

Every route needs the token printed with the URL: ``?token=``, the ``X-Review-Token`` header, or the cookie that
``GET /?token=`` sets (HttpOnly, SameSite=Strict), as Jupyter does; otherwise 403. The routes and their JSON are the
review contract of issue 21 (see the README's "Review" section): ``/api/schema``, ``/api/studies``,
``/api/study/{uid}`` (GET, PUT), ``/api/study/{uid}/image``, ``/api/cursor`` (GET, PUT), ``/`` and ``/static/{name}``.
Errors are ``{"error": "one line naming the field"}``: 400 a bad request, 404 an unknown study, 409 a stale version.
Routes that decode or write run on Starlette's thread pool, so a slow disk never blocks the event loop.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from spine_kp.io.dicom import IngestError
from spine_kp.review.marks import STATES, BadBody
from spine_kp.review.render import to_png
from spine_kp.review.session import ReviewSession, StaleVersion, UnknownStudy
from spine_kp.review.views import schema_json, studies_json, study_json

COOKIE = "spine_kp_review"  # prefix: browsers share cookies across the ports of a host, so each token has its own
HEADER = "x-review-token"
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}


def cookie_name(token: str) -> str:
    """The cookie of one server: two review servers open on one host do not overwrite each other's cookie."""
    return f"{COOKIE}_{hashlib.sha256(token.encode()).hexdigest()[:12]}"


class TokenGuard:
    """ASGI middleware: a request without the right token gets 403 (plain text for the page, JSON for the API)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = cookie_name(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan of the server; nothing else is served
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token") or request.headers.get(HEADER) or request.cookies.get(self.cookie)
        if given is None or not secrets.compare_digest(given.encode(), self.token):
            why = "no token" if given is None else "wrong token"
            message = f"{why}: open the URL that spine-kp review printed (it carries ?token=)"
            response: Response = (
                PlainTextResponse(message, 403) if scope["path"] == "/" else JSONResponse({"error": message}, 403)
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status)


def _session(request: Request) -> ReviewSession:
    return request.app.state.session


def _number(request: Request, name: str, kind: type) -> Any:
    """Query parameter ``name`` as ``kind`` (int or float, finite), None when absent; BadBody otherwise."""
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise BadBody(f"{name}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise BadBody(f"{name}: {text!r} is not a finite number")
    return value


async def index(request: Request) -> Response:
    page = STATIC / "index.html"
    if not page.is_file():
        return PlainTextResponse("the review page is not installed (spine_kp/review/static/index.html)", 404)
    response = FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-store"})
    token = request.query_params.get("token")
    if token is not None:  # TokenGuard has checked it
        response.set_cookie(cookie_name(token), token, httponly=True, samesite="strict", path="/")
    return response


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES or not (STATIC / name).is_file():
        return _error(404, f"no static file {name!r}")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-store"})


async def schema(request: Request) -> Response:
    session = _session(request)
    return JSONResponse(schema_json(session.schema, session.radius_mm))


async def studies(request: Request) -> Response:
    state, level = request.query_params.get("state"), request.query_params.get("level")
    if state is not None and state not in STATES:
        return _error(400, f"state: must be one of {', '.join(STATES)}, got {state!r}")
    return JSONResponse(studies_json(_session(request), state, level))


def study(request: Request) -> Response:
    """GET one study (a sync route: its default window may decode the slice, on the thread pool)."""
    return JSONResponse(study_json(_session(request), request.path_params["uid"]))


def image(request: Request) -> Response:
    """GET slice ``z`` of a study's series as PNG, window ``wc`` / ``ww`` (default: the slice's own)."""
    session = _session(request)
    st = session.get(request.path_params["uid"])
    z, wc, ww = _number(request, "z", int), _number(request, "wc", float), _number(request, "ww", float)
    z = st.study.z_index if z is None else z
    if not 0 <= z < st.study.series.num_slices:
        raise BadBody(f"z: {z} is not a slice of the series (0 to {st.study.series.num_slices - 1})")
    if ww is not None and ww <= 0:
        raise BadBody(f"ww: the window width must be positive, got {ww:g}")
    decoded = session.cache.get(st.study.index, st.study.series.series_uid, z)
    center = decoded.window[0] if wc is None else wc
    width = decoded.window[1] if ww is None else ww
    return Response(to_png(decoded.pixels, center, width), media_type="image/png")


async def put_study(request: Request) -> Response:
    body = await _json_body(request)
    version = await run_in_threadpool(_session(request).update, request.path_params["uid"], body)
    return JSONResponse({"version": version})


async def cursor(request: Request) -> Response:
    session = _session(request)
    if request.method == "PUT":
        await run_in_threadpool(session.set_cursor, await _json_body(request))
    return JSONResponse(session.cursor)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deeply
        raise BadBody("body: not valid JSON") from None


async def _bad(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def _unknown(request: Request, exc: Exception) -> Response:
    return _error(404, exc.args[0] if exc.args else "no such study")


async def _stale(request: Request, exc: Exception) -> Response:
    return _error(409, str(exc))


async def _unreadable(request: Request, exc: Exception) -> Response:
    return _error(422, f"the slice cannot be shown: {exc}")


def create_app(session: ReviewSession, token: str) -> Starlette:
    """The review app over ``session``, guarded by ``token``."""
    from starlette.middleware import Middleware

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/schema", schema),
        Route("/api/studies", studies),
        Route("/api/study/{uid}", study, methods=["GET"]),
        Route("/api/study/{uid}", put_study, methods=["PUT"]),
        Route("/api/study/{uid}/image", image),
        Route("/api/cursor", cursor, methods=["GET", "PUT"]),
    ]
    handlers = {BadBody: _bad, UnknownStudy: _unknown, StaleVersion: _stale, IngestError: _unreadable}
    app = Starlette(routes=routes, middleware=[Middleware(TokenGuard, token=token)], exception_handlers=handlers)
    app.state.session = session
    return app
