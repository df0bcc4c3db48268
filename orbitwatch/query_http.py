"""The query service's HTTP vocabulary: the endpoints and the methods they take, a request as read from
WSGI, an answer, error objects and the status of each error kind (``orbitwatch.query_service`` routes)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs
from wsgiref.types import WSGIEnvironment

from orbitwatch.errors import ServiceError
from orbitwatch.result_formats import CONTENT_TYPES, WIRE_FORMATS, WireFormat, encode
from storage.guarded import GuardedResult
from storage.saved_queries import SAVED_QUERIES

STATUS_OF_KIND = {
    "read_only": HTTPStatus.FORBIDDEN,
    "file_access": HTTPStatus.FORBIDDEN,
    "timeout": HTTPStatus.GATEWAY_TIMEOUT,
    "too_large": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    "busy": HTTPStatus.SERVICE_UNAVAILABLE,
    "query": HTTPStatus.BAD_REQUEST,
    "bad_request": HTTPStatus.BAD_REQUEST,
    "unauthorized": HTTPStatus.UNAUTHORIZED,
    "not_found": HTTPStatus.NOT_FOUND,
    "method_not_allowed": HTTPStatus.METHOD_NOT_ALLOWED,
    "rejected": HTTPStatus.CONFLICT,
    "internal": HTTPStatus.INTERNAL_SERVER_ERROR,
}
ENDPOINTS: dict[str, tuple[str, ...]] = {  # and /v1/saved/NAME: GET, POST
    "/v1/health": ("GET",),
    "/v1/openapi.json": ("GET",),
    "/v1/status": ("GET",),
    "/v1/saved": ("GET",),
    "/v1/query": ("GET", "POST"),
    "/v1/alerts/commands": ("POST",),
}
HEAD_TOO = {"/v1/health", "/v1/openapi.json"}


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, content type, body and extra headers."""

    status: HTTPStatus
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """What the service reads of a WSGI request."""

    method: str
    path: str
    query: str
    authorization: str | None
    body: bytes

    @classmethod
    def of(cls, environ: WSGIEnvironment, max_body_bytes: int) -> Request:
        """The request in ``environ``; a malformed or oversized body is refused (waitress refuses them first)."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        body = b""
        if method == "POST":
            declared = str(environ.get("CONTENT_LENGTH") or "0")
            if not declared.isdigit():
                raise ServiceError("bad_request", f"Content-Length must be a number of bytes, got {declared!r}")
            if int(declared) > max_body_bytes:
                raise ServiceError(
                    "too_large", f"the request body is over {max_body_bytes} bytes (query.max_body_bytes)"
                )
            body = environ["wsgi.input"].read(int(declared))
        return cls(
            method,
            str(environ.get("PATH_INFO", "/")),
            str(environ.get("QUERY_STRING", "")),
            environ.get("HTTP_AUTHORIZATION"),
            body,
        )

    def arguments(self) -> dict[str, Any]:
        """GET: the URL's arguments (the last of each); POST: the JSON object of the body (``format`` may be in
        the URL)."""
        if self.method == "GET":
            return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}
        try:
            body = json.loads(self.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
            raise ServiceError("bad_request", f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ServiceError("bad_request", "the body must be a JSON object")
        args = cast(dict[str, Any], body)
        url_args = parse_qs(self.query, keep_blank_values=True)
        if "format" in url_args:  # the body's format wins, but a wrong one in the URL is still wrong
            args.setdefault("format", wire_format(url_args["format"][-1]))
        return args


def allow(path: str, method: str) -> None:
    """Refuse a path no endpoint has (``not_found``) or a method the endpoint does not take."""
    if path.startswith("/v1/saved/") and path != "/v1/saved/":
        allowed: tuple[str, ...] = ("GET", "POST")
    elif path in ENDPOINTS:
        allowed = ENDPOINTS[path]
    else:
        raise ServiceError("not_found", f"no endpoint {path} (see /v1/openapi.json)")
    if path in HEAD_TOO:  # HEAD only where answering costs nothing (not a query)
        allowed = (*allowed, "HEAD")
    if method not in allowed:
        raise ServiceError(
            "method_not_allowed",
            f"{path} takes {' or '.join(allowed)}, not {method}",
            (("Allow", ", ".join(allowed)),),
        )


def is_parameters(value: object) -> bool:
    """True for a JSON object of name: number or string (a query's parameters)."""
    return isinstance(value, dict) and all(isinstance(v, int | float | str) for v in value.values())


@functools.cache
def openapi() -> bytes:
    """The OpenAPI description shipped in the package (read once)."""
    return resources.files("orbitwatch").joinpath("openapi.json").read_bytes()


def wire_format(value: object) -> WireFormat:
    """``value`` as a wire format; ``bad_request`` for any other."""
    if value not in WIRE_FORMATS:
        raise ServiceError("bad_request", f"format must be one of {', '.join(WIRE_FORMATS)}, got {value!r}")
    return cast(WireFormat, value)


PhaseObserver = Callable[[Mapping[str, float]], None]
"""Called with each answered query's phases (seconds by name: ``GuardedResult.phases``, the service's waits
before it, and ``encode``), e.g. for metrics."""


def result_answer(result: GuardedResult, fmt: WireFormat, observe: PhaseObserver | None = None) -> Answer:
    """A query's rows in ``fmt``, with their count, seconds and phases (``Server-Timing``) in headers."""
    began = time.perf_counter()
    body = encode(result.frame, fmt)
    phases = {**result.phases, "encode": time.perf_counter() - began}
    if observe is not None:
        observe(phases)
    headers = (
        ("X-Orbitwatch-Rows", str(result.frame.height)),
        ("X-Orbitwatch-Seconds", f"{result.elapsed_s:.4f}"),
        ("Server-Timing", server_timing(phases)),
    )
    return Answer(HTTPStatus.OK, CONTENT_TYPES[fmt], body, headers)


def server_timing(phases: Mapping[str, float]) -> str:
    """``phases`` (seconds) as a W3C ``Server-Timing`` header value: ``name;dur=milliseconds, ...``."""
    return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in phases.items())


def json_answer(status: HTTPStatus, value: object) -> Answer:
    """``value`` as JSON with ``status``."""
    return Answer(status, CONTENT_TYPES["json"], json.dumps(value).encode())


def error_answer(kind: str, message: str) -> Answer:
    """The error object ``{"error": kind, "message": message}`` with the status of its kind."""
    return json_answer(STATUS_OF_KIND.get(kind, HTTPStatus.BAD_REQUEST), {"error": kind, "message": message})


def saved_list() -> list[dict[str, object]]:
    """What ``GET /v1/saved`` answers: each saved query's name, description and parameters."""
    return [
        {
            "name": q.name,
            "description": q.description,
            "parameters": {
                n: {"type": p.kind.__name__, "default": p.default, "help": p.help} for n, p in q.parameters.items()
            },
        }
        for q in SAVED_QUERIES.values()
    ]
