"""Every failure as one JSON body (`schemas.ErrorOut`) that names the field to fix, and the two guards around
the routes: a body-size limit that refuses before parsing, and a boundary that turns any unexpected exception
into a logged 500 so that no request can take the server down.

Statuses: 400 malformed JSON, 404 an unknown path or sample id, 405 a wrong method, 413 a body over the
limit, 422 a body that parses but is wrong (a missing or misspelt field, k <= 0 or above --max-k, too many
queries, an unknown pool id), 500 a bug (the message says so; the traceback is in the server's log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from influcoder.serve.schemas import ErrorOut, FieldError

log = logging.getLogger(__name__)

LOCATIONS = ("body", "path", "query", "header")
"""Where FastAPI says a field came from: the first element of a pydantic error's location, left out of names."""


class RequestError(Exception):
    """A request the server understood but refuses: `status`, the `field` at fault, and why."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.status, self.field, self.message = status, field, message


def field_name(loc: tuple) -> str:
    """``("body", "queries", 2, "response")`` -> ``queries[2].response`` (the body itself: ``body``)."""
    parts = list(loc[1:] if loc and loc[0] in LOCATIONS else loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or (str(loc[0]) if loc else "body")


def error_response(
    status: int, message: str, field: str | None = None, errors: Sequence[FieldError] = ()
) -> JSONResponse:
    """The JSON body every failure gets (`ErrorOut`)."""
    body = ErrorOut(status=status, error=message, field=field, errors=list(errors))
    return JSONResponse(body.model_dump(), status_code=status)


async def on_request_error(request: Request, exc: RequestError) -> JSONResponse:
    return error_response(exc.status, str(exc), exc.field)


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Malformed JSON is a 400 naming where it broke; a body that parsed but does not fit the schema a 422
    naming each field."""
    problems = exc.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error", "not valid JSON")
            where = problem["loc"][1] if len(problem.get("loc", ())) > 1 else None
            at = f" at character {where}" if isinstance(where, int) else ""
            return error_response(400, f"body: malformed JSON{at}: {reason}", "body")
    errors = [FieldError(field=field_name(tuple(p.get("loc", ()))), message=p.get("msg", "invalid")) for p in problems]
    first = errors[0] if errors else FieldError(field="body", message="invalid request")
    if first.field == "body":  # the body as a whole: say what is expected, not pydantic's words only
        kind = request.headers.get("content-type", "")
        hint = "a JSON object" if "json" in kind else "a JSON object, with Content-Type: application/json"
        first = FieldError(field="body", message=f"{first.message}: send {hint} (see /v1/openapi.json)")
        errors[:1] = [first]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(422, f"{first.field}: {first.message}{more}", first.field, errors)


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (no such path, wrong method) and the body limit's 413, as JSON."""
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such path: {request.method} {request.url.path} (the API lives under /v1/)"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    response = error_response(exc.status_code, message, "body" if exc.status_code == 413 else None)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


class BodyLimit:
    """Refuse a request body above `max_bytes` with a 413, by its Content-Length before anything is read, or,
    for a body sent in chunks, as soon as the bytes read pass the limit (the route is never called with it)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def too_large(self, size: int | None = None) -> str:
        said = f" ({size:,} bytes)" if size is not None else ""
        return f"body: the request body{said} is over this server's limit of {self.max_bytes:,} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await error_response(413, self.too_large(int(length)), "body")(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self.too_large())  # FastAPI passes an HTTPException from reading on
            return message

        await self.app(scope, counted, send)


class ErrorBoundary:
    """The last guard: an exception no route handled is logged with its traceback and answered with a 500
    that names its kind, and the server goes on serving."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:  # noqa: BLE001 - the boundary: every failure becomes a response, none a crash
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                message = f"internal error ({type(exc).__name__}: {exc}); the server log has the traceback"
                await error_response(500, message)(scope, receive, send)


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Register the handlers and the two guards on `app` (the boundary outermost, so it catches the limit's
    failures too)."""
    app.add_exception_handler(RequestError, on_request_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(ErrorBoundary)
