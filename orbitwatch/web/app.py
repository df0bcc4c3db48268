"""The web view's Flask application: four pages, their live fragments and JSON, the actions, the assets.

Why Flask: a small, well-kept WSGI framework whose Jinja templates escape every value by default (rack ids
and reasons come from the space link), and it runs on the same waitress edge as the query service. Why
Plotly: its JavaScript ships inside the ``plotly`` Python package (``plotly/package_data/plotly.min.js``),
so the pages work air-gapped, and it draws heatmaps, threshold lines and broken lines over gaps itself.
Every script and stylesheet is served from installed packages; the pages reference nothing outside.

Actions (``POST /api/alerts/<action>``) take JSON only (a cross-site form cannot send it without the
browser asking first, and no such request is allowed), refuse another ``Origin``, and with ``web.token``
set need ``Authorization: Bearer <token>``. They go to the shard's daemon, which applies them like
``orbitwatch alerts`` and records them in ``alert_audit``.
"""

from __future__ import annotations

import functools
import hmac
import io
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import polars as pl
from flask import Flask, Response, abort, jsonify, redirect, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from orbitwatch.web import pages
from orbitwatch.web.errors import ReadOnlyError, SourceError, TooManyPages
from orbitwatch.web.live import LiveUpdates
from orbitwatch.web.sources import Fleet

log = logging.getLogger(__name__)
ACTIONS = ("ack", "unack", "shelve", "unshelve")
MAX_HOLD = timedelta(days=30)
"""The longest ack or shelve the pages accept."""


class _IsoJson(DefaultJSONProvider):
    """JSON with times in ISO 8601 (Flask's default is RFC 822, which plotting libraries do not read as dates)."""

    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime):
            return o.astimezone(UTC).isoformat()
        return DefaultJSONProvider.default(o)


def create_app(fleet: Fleet, live: LiveUpdates, token: str | None = None) -> Flask:
    """The application over ``fleet``; ``token``: what actions need (None: none)."""
    app = Flask(__name__)
    app.json = _IsoJson(app)
    shared_views = _PerVersion(live)

    @app.context_processor
    def shared() -> dict[str, Any]:
        return {"shards": [s.name for s in fleet.sources], "token_required": token is not None}

    @app.template_filter("when")
    def when(value: object) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else "-"

    @app.template_filter("pct")
    def pct(value: object) -> str:
        return f"{value:.0f}%" if isinstance(value, int | float) else "-"

    @app.errorhandler(SourceError)
    def source_failed(exc: SourceError) -> tuple[str, int]:
        log.warning("web view: %s: %s", exc.source, exc)
        return render_template("error.html", title="A shard did not answer", source=exc.source, message=str(exc)), 502

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Any, int]:
        code = exc.code or 500
        if request.path.startswith("/api/"):
            return jsonify(error=exc.name, message=exc.description), code
        return render_template("error.html", title=exc.name, source=None, message=exc.description), code

    @app.get("/")
    def index() -> WerkzeugResponse:
        return redirect("/fleet")

    @app.get("/fleet")
    def fleet_page() -> str:
        return render_template("fleet.html", view=shared_views.get("fleet", pages.fleet_view, fleet), page="fleet")

    @app.get("/fragment/fleet")
    def fleet_fragment() -> str:
        return render_template("fleet_body.html", view=shared_views.get("fleet", pages.fleet_view, fleet))

    @app.get("/rack")
    def rack_page() -> str:
        rack = _rack_arg()
        view = pages.rack_view(fleet, rack, request.args.get("range"))
        if view is None:
            abort(404, f"no shard knows a rack called {rack!r}")
        return render_template("rack.html", rack=rack, view=view, ranges=list(pages.RANGES), page="rack")

    @app.get("/api/rack")
    def rack_data() -> Response:
        rack = _rack_arg()
        view = pages.rack_view(fleet, rack, request.args.get("range"))
        if view is None:
            abort(404, f"no shard knows a rack called {rack!r}")
        window = view.pop("span")
        return jsonify({**view, "start": window.start.isoformat(), "end": window.end.isoformat()})

    @app.get("/fragment/rack-now")
    def rack_now_fragment() -> str:
        view = pages.rack_view(fleet, _rack_arg(), "1h")
        if view is None:
            abort(404)
        return render_template("rack_now.html", view=view)

    @app.get("/alerts")
    def alerts_page() -> str:
        return render_template("alerts.html", view=shared_views.get("alerts", pages.alerts_view, fleet), page="alerts")

    @app.get("/fragment/alerts")
    def alerts_fragment() -> str:
        return render_template("alerts_body.html", view=shared_views.get("alerts", pages.alerts_view, fleet))

    @app.post("/api/alerts/<action>")
    def alert_action(action: str) -> tuple[Response, int]:
        _check_action_request(token)
        body = request.get_json(silent=True)
        if action not in ACTIONS:
            abort(404, f"no action {action!r} (one of {', '.join(ACTIONS)})")
        if not isinstance(body, dict):
            abort(400, "send a JSON object")
        shard, command = _command(action, body)
        try:
            outcome = fleet.alert_command(shard, command)
        except ReadOnlyError as exc:
            abort(409, str(exc))
        except SourceError as exc:
            status = {"bad_request": 400, "rejected": 409, "unauthorized": 502}.get(exc.kind, 502)
            return jsonify(error=exc.kind, message=str(exc)), status
        live.touched(f"{action} by {command['requested_by']}")
        return jsonify(outcome), 200

    @app.get("/tenants")
    def tenants_page() -> str:
        bucket = _bucket_arg()
        window, usage = pages.tenants_view(fleet, request.args.get("range", "7d"), bucket)
        by_tenant = usage.group_by("tenant").agg(pl.col("gpu_hours").sum()).sort("gpu_hours", descending=True)
        return render_template(
            "tenants.html",
            page="tenants",
            window=window,
            bucket=bucket,
            ranges=list(pages.RANGES),
            totals=by_tenant.to_dicts(),
            usage=[{**r, "period": r["period"].isoformat()} for r in usage.to_dicts()],
        )

    @app.get("/tenants.csv")
    def tenants_csv() -> Response:
        bucket = _bucket_arg()
        window, usage = pages.tenants_view(fleet, request.args.get("range", "7d"), bucket)
        out = io.StringIO()
        usage.select("tenant", "period", "gpu_hours").write_csv(out)
        name = f"tenant-usage-{bucket}-{window.start:%Y%m%dT%H%M}-{window.end:%Y%m%dT%H%M}.csv"
        return Response(
            out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    @app.get("/events")
    def events() -> Response:
        try:
            stream = live.stream()
        except TooManyPages as exc:
            abort(503, str(exc))
        return Response(
            stream, mimetype="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    @app.get("/vendor/plotly.min.js")
    def plotly_js() -> Response:
        return Response(_plotly(), mimetype="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return app


class _PerVersion:
    """The fleet-wide views (fleet, alerts) computed once per version of the data, however many pages
    fetch them after a commit: the daemons see one query per commit, not one per open page."""

    def __init__(self, live: LiveUpdates) -> None:
        self._live = live
        self._lock = threading.Lock()
        self._views: dict[str, tuple[str, dict[str, Any]]] = {}

    def get(self, name: str, compute: Callable[[Fleet], dict[str, Any]], fleet: Fleet) -> dict[str, Any]:
        """The view ``name`` of the current version (computed now if it is not known yet)."""
        version = self._live.version
        with self._lock:
            known = self._views.get(name)
            if version is not None and known is not None and known[0] == version:
                return known[1]
            view = compute(fleet)  # under the lock: pages arriving together wait for one computation
            if version is not None:
                self._views[name] = (version, view)
            return view


def _rack_arg() -> str:
    rack = request.args.get("id", "")
    if not rack or len(rack) > 200:
        abort(400, "give the rack as ?id=RACK_ID (at most 200 characters)")
    return rack


def _bucket_arg() -> str:
    bucket = request.args.get("bucket", "hour")
    if bucket not in ("hour", "day"):
        abort(400, "bucket must be hour or day")
    return bucket


def _check_action_request(token: str | None) -> None:
    """JSON only, from this origin, with the token when one is set."""
    if request.mimetype != "application/json":
        abort(415, "actions take application/json")
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        abort(403, f"an action from another origin ({origin}) is refused")
    if token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            abort(401, "this view needs its token for actions (web.token): enter it on the alerts page")


def _command(action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The shard and the ``AlertCommand`` JSON of an action's body, or a 400."""
    shard, fingerprint, by = body.get("shard", 0), body.get("fingerprint"), body.get("requested_by")
    if not isinstance(shard, int) or isinstance(shard, bool):
        abort(400, "shard must be a number")
    if not isinstance(fingerprint, str) or not fingerprint:
        abort(400, "give the alert's fingerprint")
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        abort(400, "say who you are (requested_by, 1 to 200 characters): the audit records it")
    command: dict[str, Any] = {"action": action, "fingerprint": fingerprint, "requested_by": by.strip(), "via": "web"}
    if action in ("ack", "shelve"):
        minutes = body.get("minutes", 120)
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_HOLD.days * 1440:
            abort(400, f"minutes must be a whole number from 1 to {MAX_HOLD.days * 1440}")
        command["until"] = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
    return shard, command


@functools.cache
def _plotly() -> bytes:
    """Plotly's JavaScript, from the installed ``plotly`` package (read once)."""
    return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
