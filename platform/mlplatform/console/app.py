"""The web console (issue 21): one ASGI app over the evaluation store, server-rendered with Jinja2.

Pages are plain HTML with inline CSS and inline SVG charts drawn on the server (:mod:`mlplatform.charts`, shared
with the monitoring report): no script, no CDN, no request beyond this server. Everything is read-only except
three actions the CLI already has (alias rollback, rollout advance and abort); they call the same registry and
rollout functions as ``mlplatform models rollback`` / ``mlplatform rollout advance|abort``, need a ``confirm=yes``
form field (without it nothing happens), and the store records them in the audit table with the actor.

With ``auth.enabled`` every route but ``/login`` and ``/healthz`` needs the serving bearer token
(:class:`mlplatform.serving.access.TokenCheck`), as an ``Authorization: Bearer`` header or, for a browser, the
``console_token`` cookie that ``/login`` sets after checking the same token.

It runs stand-alone (``mlplatform ui``) or as a Serve application at ``/console`` (``mlplatform serve up``); links
are built from the ASGI ``root_path`` so both work.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlplatform import charts
from mlplatform.client import Client
from mlplatform.config.base import StrictModel
from mlplatform.config.serve import AuthConfig
from mlplatform.errors import InvalidInput, MLPlatformError, NotFound, Unauthorized
from mlplatform.lineage_diff import summarize
from mlplatform.rollouts import control
from mlplatform.serving.access import TokenCheck, client_key
from mlplatform.settings import Settings
from mlplatform.store.sql.console import Page, SqlConsoleQueries, key_metrics
from mlplatform.store.sql.runs import flatten
from mlplatform.store.sql.session import SessionScope

COOKIE = "console_token"
ACTIONS = ("rollback", "advance", "abort")
REPORT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(html|json)$")
PSI_FEATURES_SHOWN = 8


class ConsoleConfig(StrictModel):
    """Where the console reads from and who may use it."""
    store_url: str | None = Field(None, description="Store URL (default: the settings' store).")
    artifact_uri: str | None = None
    home: str | None = Field(None, description="MLPLATFORM_HOME of the platform whose reports are linked.")
    reports_dir: str | None = Field(None, description="`monitor report` output (default MLPLATFORM_HOME/reports).")
    auth: AuthConfig = Field(default_factory=AuthConfig)
    page_size: int = Field(50, ge=1, le=200)


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return charts.fmt(value)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("mlplatform.console", "templates"),
                      autoescape=select_autoescape(["html"], default=True), trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = charts.fmt
    env.filters["time"] = _fmt_time
    env.filters["q"] = lambda v: quote(str(v), safe="")
    env.filters["short"] = lambda v, n=12: (str(v)[:n] + "…") if v and len(str(v)) > n else charts.fmt(v)
    # only web links become hrefs: a stored "javascript:" runbook URL must not be clickable
    env.filters["web_url"] = lambda v: v if isinstance(v, str) and v.lower().startswith(("http://", "https://")) \
        else None
    env.globals["level_colour"] = lambda level: charts.LEVEL_COLOURS.get(str(level), "#555")
    return env


def create_app(config: ConsoleConfig | None = None, client: Client | None = None) -> FastAPI:
    """The console app; ``client`` lets a caller share its :class:`mlplatform.client.Client` (tests)."""
    cfg = config or ConsoleConfig()
    if client is None:

        settings = Settings(home=cfg.home) if cfg.home else None  # a Serve replica knows the home from its args
        client = Client(settings, store_url=cfg.store_url, artifact_uri=cfg.artifact_uri)
    queries = SqlConsoleQueries(SessionScope(client.engine, client.display_url))
    token_check = None
    if cfg.auth.enabled:
        token_check = TokenCheck(cfg.auth)  # a missing secret fails here, at start, not at the first request
    reports_dir = Path(cfg.reports_dir) if cfg.reports_dir else (
        Path(cfg.home) / "reports" if cfg.home else client.settings.home / "reports")
    env = _environment()
    app = FastAPI(title="mlplatform console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.client, app.state.queries = client, queries

    def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        page = env.get_template(template).render(base=base, css=Markup(charts.CSS), request=request,
                                                 auth=token_check is not None, **context)
        return HTMLResponse(page, status_code=status_code)

    def authorize(request: Request) -> str | None:
        """The presented token (or None when auth is off); Unauthorized when it is missing or wrong."""
        if token_check is None:
            return None
        headers = dict(request.headers)
        if not headers.get("authorization") and request.cookies.get(COOKIE):
            headers["authorization"] = f"Bearer {request.cookies[COOKIE]}"
        return token_check.check(headers)

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        root, path = request.scope.get("root_path", ""), request.url.path
        if root and path.startswith(root):  # Serve mounts the app at /console
            path = path[len(root):]
        if path not in ("/login", "/healthz"):
            try:
                request.state.token = authorize(request)
            except Unauthorized as exc:
                return render(request, "error.html", 401, error=exc, login=True)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                       "img-src 'self' data:; form-action 'self'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.exception_handler(MLPlatformError)
    async def platform_error(request: Request, exc: MLPlatformError) -> HTMLResponse:
        status = exc.http_status if 400 <= exc.http_status < 500 else 503
        return render(request, "error.html", status, error=exc)

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, exc: RequestValidationError) -> HTMLResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ["query"], "msg": "invalid"}
        error = InvalidInput(str(first.get("msg")), field=str(first.get("loc", ["?"])[-1]))
        return render(request, "error.html", 422, error=error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        error = NotFound(f"no page at {request.url.path}", field="path") if exc.status_code == 404 else \
            InvalidInput(str(exc.detail), field="request")
        return render(request, "error.html", exc.status_code, error=error)

    def pager(request: Request, page: Page[Any], param: str = "offset") -> dict[str, str | None]:
        def link(offset: int | None) -> str | None:
            if offset is None:
                return None
            query = dict(request.query_params)
            query[param] = str(offset)
            return "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())

        return {"prev": link(page.prev_offset), "next": link(page.next_offset)}

    # -- pages -------------------------------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/models", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        return render(request, "login.html", error=None)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await _form(request)
        token = form.get("token", "")
        try:
            if token_check is not None:
                token_check.check({"authorization": f"Bearer {token}"})
        except Unauthorized as exc:
            return render(request, "login.html", 401, error=exc)
        response = RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/models", status_code=303)
        if token_check is not None:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/models", response_class=HTMLResponse)
    def models(request: Request, offset: int = 0) -> HTMLResponse:
        page = queries.models_page(offset, cfg.page_size)
        return render(request, "models.html", page=page, pager=pager(request, page))

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_detail(request: Request, name: str, voffset: int = 0, hoffset: int = 0,
                     at: str | None = None) -> HTMLResponse:
        model = client.registry.get_model(name)
        versions = queries.versions_page(name, voffset, 20)
        history = queries.alias_history_page(name, hoffset, cfg.page_size)
        holder = None
        if at:
            when = _parse_time(at)
            holder = {"at": when, "champion": queries.alias_holder_at(name, "champion", when)}
        rollout = _rollout_status(client, name)
        return render(request, "model.html", model=model, versions=versions, history=history, holder=holder,
                      at=at or "", timeline=Markup(_alias_timeline(queries.alias_segments(name))),
                      rollout=rollout, key_metrics=key_metrics,
                      vpager=pager(request, versions, "voffset"), hpager=pager(request, history, "hoffset"))

    @app.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
    def version_detail(request: Request, name: str, version: int) -> HTMLResponse:
        record = client.registry.get_version(name, version=version)
        lineage = record.lineage or {}
        evaluations = [e for e in client.registry.evaluations(name, version)][-100:]
        return render(request, "version.html", v=record, summary=summarize(record),
                      config=flatten(lineage.get("config") or {}), datasets=lineage.get("datasets") or [],
                      git=lineage.get("git") or {}, evaluations=evaluations)

    @app.get("/models/{name}/rollout", response_class=HTMLResponse)
    def rollout_detail(request: Request, name: str) -> HTMLResponse:
        client.registry.get_model(name)
        status = _rollout_status(client, name)
        if status is None:
            raise NotFound(f"model {name} has no rollout; start one with `mlplatform rollout start`", field="model")
        return render(request, "rollout.html", name=name, r=status)

    @app.get("/models/{name}/actions/{action}", response_class=HTMLResponse)
    def confirm_action(request: Request, name: str, action: str) -> HTMLResponse:
        _check_action(action)
        client.registry.get_model(name)
        return render(request, "confirm.html", name=name, action=action, reason="", done=None)

    @app.post("/models/{name}/actions/{action}", response_class=HTMLResponse)
    async def run_action(request: Request, name: str, action: str) -> HTMLResponse:
        _check_action(action)
        client.registry.get_model(name)
        form = await _form(request)
        reason = form.get("reason") or None
        if form.get("confirm") != "yes":  # the confirmation step: nothing happens without it
            return render(request, "confirm.html", name=name, action=action, reason=reason or "", done=None)

        address = request.client.host if request.client else None
        actor = "console " + client_key(request.headers, getattr(request.state, "token", None), address)
        result = _act(client, name, action, actor, reason)
        return render(request, "confirm.html", name=name, action=action, reason=reason or "", done=result,
                      actor=actor)

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request, metric: str | None = None, order: str = "desc", kind: str | None = None,
             dataset_version: str | None = None, parent: str | None = None, offset: int = 0) -> HTMLResponse:
        if order not in ("asc", "desc"):
            raise InvalidInput("order must be 'asc' or 'desc'", field="order")
        page = queries.runs_page(metric=metric or None, descending=order == "desc", kind=kind or None,
                                 dataset_version=dataset_version or None, parent_run_id=parent or None,
                                 offset=offset, limit=cfg.page_size)
        return render(request, "runs.html", page=page, pager=pager(request, page), metric=metric or "",
                      order=order, kind=kind or "", dataset_version=dataset_version or "", parent=parent or "",
                      metric_keys=queries.metric_keys(), datasets=queries.datasets_page(limit=100).items)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_detail(request: Request, run_id: str) -> HTMLResponse:
        detail = queries.run_detail(run_id)
        curves = {key: Markup(charts.line_chart_svg(series, x_name="step")) for key, series in detail["curves"].items()}
        return render(request, "run.html", d=detail, run=detail["run"], curves=curves,
                      config=flatten(detail["run"].config or {}))

    @app.get("/datasets", response_class=HTMLResponse)
    def datasets(request: Request, name: str | None = None, offset: int = 0) -> HTMLResponse:
        page = queries.datasets_page(name or None, offset, cfg.page_size)
        return render(request, "datasets.html", page=page, pager=pager(request, page), name=name or "")

    @app.get("/datasets/{dataset_id}", response_class=HTMLResponse)
    def dataset_detail(request: Request, dataset_id: str) -> HTMLResponse:
        detail = queries.dataset_detail(dataset_id)
        profile = detail["profile"]
        columns = profile.get("columns") if isinstance(profile.get("columns"), dict) else {}
        reports = [r for r in detail["runs"] if r.get("validation")]
        return render(request, "dataset.html", d=detail, columns=columns, reports=reports)

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring(request: Request, offset: int = 0, status: str | None = None) -> HTMLResponse:
        models_page = queries.models_page(0, cfg.page_size)
        alerts = queries.alerts_page(None, status or None, offset, cfg.page_size)
        return render(request, "monitoring.html", models=models_page.items, alerts=alerts, status=status or "",
                      pager=pager(request, alerts))

    @app.get("/monitoring/{name}", response_class=HTMLResponse)
    def monitoring_model(request: Request, name: str, offset: int = 0) -> HTMLResponse:
        history = queries.drift_history(name)
        alerts = queries.alerts_page(name, None, offset, cfg.page_size)
        latest_psi = history[-1]["psi"] if history else {}
        shown = sorted(latest_psi, key=lambda f: -(latest_psi[f] or 0))[:PSI_FEATURES_SHOWN]
        psi_series = {f: [(h["time"].isoformat(), h["psi"][f]) for h in history if f in h["psi"]] for f in shown}
        metric_names = sorted({k for h in history for k in h["metrics"]})
        perf = {k: [(h["time"].isoformat(), h["metrics"][k]) for h in history
                    if isinstance(h["metrics"].get(k), int | float)] for k in metric_names}
        estimated = {k: [(h["time"].isoformat(), v) for h in history
                         for k2, v in h["estimated"].items() if k2 == k and isinstance(v, int | float)]
                     for k in sorted({k for h in history for k in h["estimated"]})}
        return render(request, "monitor_model.html", name=name, history=history, alerts=alerts,
                      pager=pager(request, alerts), psi_chart=Markup(charts.line_chart_svg(psi_series)),
                      psi_table=[{"feature": f, "psi": latest_psi[f]} for f in sorted(latest_psi)],
                      perf_chart=Markup(charts.line_chart_svg({k: v for k, v in perf.items() if v})),
                      estimated_chart=Markup(charts.line_chart_svg(estimated)) if estimated else None,
                      activity=queries.prediction_activity(name), reports=_reports(reports_dir, name))

    @app.get("/reports/{filename}")
    def report_file(filename: str) -> FileResponse:
        path = reports_dir / filename
        if not REPORT_NAME.match(filename) or not path.is_file():
            raise NotFound(f"no report named {filename!r}", field="filename")
        return FileResponse(path)

    return app


async def _form(request: Request) -> dict[str, str]:
    """Fields of an ``application/x-www-form-urlencoded`` body (the only kind the console's forms send)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise NotFound(f"unknown action {action!r}; the console can {', '.join(ACTIONS)}", field="action")


def _act(client: Client, name: str, action: str, actor: str, reason: str | None) -> str:
    """The CLI's own functions: ``models rollback`` and ``rollout advance|abort``."""
    if action == "rollback":
        version = client.registry.rollback(name, actor=actor, reason=reason)
        return f"{name}@champion -> {version.version} (rolled back)"
    if action == "advance":
        state = control.advance(client, name, actor=actor, reason=reason or "manual advance")
    else:
        state = control.abort(client, name, actor=actor, reason=reason or "aborted by operator")
    return f"rollout of {name}: {state.status} at stage {state.stage}"


def _rollout_status(client: Client, name: str) -> dict[str, Any] | None:

    if control.rollout_store(client).get(name) is None:
        return None
    return control.status(client, name)


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a date (YYYY-MM-DD or an ISO time)", field="at") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if len(text) <= 10:  # a bare date means the end of that day
        when = when.replace(hour=23, minute=59, second=59)
    return when


def _alias_timeline(segments: list[dict[str, Any]]) -> str:
    if not segments:
        return '<p class="muted">no champion yet</p>'
    now = datetime.now(UTC)
    first = segments[0]["start"]
    span = max((now - first).total_seconds(), 1.0)
    bars = []
    for s in segments:
        end = s["end"] or now
        title = (f"v{s['version']} champion {_fmt_time(s['start'])} to "
                 f"{_fmt_time(s['end']) if s['end'] else 'now'} by {s['actor']}: {s['reason'] or ''}")
        bars.append((f"v{s['version']}", (s["start"] - first).total_seconds() / span,
                     (end - first).total_seconds() / span, title))
    return charts.timeline_svg(bars, _fmt_time(first), "now")


def _reports(reports_dir: Path, name: str) -> list[dict[str, Any]]:
    """HTML reports written by ``mlplatform monitor report`` for this model, newest first."""
    if not reports_dir.is_dir():
        return []
    files = [p for p in reports_dir.glob("*.html") if p.name.startswith(f"{name}-") and REPORT_NAME.match(p.name)]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [{"name": p.name, "modified": datetime.fromtimestamp(p.stat().st_mtime, UTC)} for p in files[:20]]
