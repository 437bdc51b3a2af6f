"""Operations endpoints: ``/healthz``, ``/readyz``, ``/metrics``, and request ids.

- ``GET /healthz``: the process answers (no dependency is touched): for liveness probes.
- ``GET /readyz``: 200 when the database answers, the queues answer (where this process
  sends jobs), the blob store answers and every active model version's files are reachable
  (its manifest in the blob store, or its local folder); 503 with the failing checks
  otherwise. For readiness probes and load balancers.
- ``GET /metrics``: Prometheus text format (``prometheus-client``). Per process: requests
  and their latencies by route template and status. From the database and the queues (the
  same on every process, read at most every :data:`DB_METRICS_TTL` seconds): jobs by
  queue and status, messages waiting per queue, job durations by kind (generation is
  ``kind="generate_clip"``), seconds of audio generated, ratings. With
  ``ENCORE_METRICS_TOKEN`` set, the endpoint wants ``Authorization: Bearer <token>``.
  Under ``uvicorn --workers N`` set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder so
  that the request metrics of all processes are summed (prometheus-client's multiprocess
  mode).

:class:`RequestContextMiddleware` gives each request an id (the client's ``X-Request-Id``
when it is a plausible one, else a fresh one), returns it in ``X-Request-Id``, puts it in
every log line of the request (:mod:`encore.logs`), and records the request metrics.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from encore import logs

if TYPE_CHECKING:
    from encore.services.context import ServiceContext

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: Seconds the figures read from the database are reused between scrapes.
DB_METRICS_TTL = 10.0
#: Seconds /readyz waits for all its checks.
READY_TIMEOUT = 5.0
JOB_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

router = APIRouter(include_in_schema=False)


class HttpMetrics:
    """The per-process request metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "encore_http_requests", "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "encore_http_request_duration_seconds",
            "Time from the request to the end of the response body, by method and route",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def _route_label(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    if str(scope.get("path", "")).startswith("/static/"):
        return "/static"
    return "unmatched"  # 404s: one label, whatever the path (no label explosion)


class RequestContextMiddleware:
    """Request id (header in, header out, log lines) and request metrics (pure ASGI)."""

    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = logs.request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            raise
        finally:
            self.metrics.observe(scope.get("method", "?"), _route_label(scope), status,
                                 time.perf_counter() - started)
            logs.request_id.reset(token)


# --- figures from the database and the queues ---------------------------------------------


def _duration_expr(dialect: str, started: Any, finished: Any) -> Any:
    if dialect == "sqlite":
        return (sa.func.julianday(finished) - sa.func.julianday(started)) * 86400.0
    return sa.extract("epoch", finished - started)


class StoreCollector:
    """Prometheus collector of the figures every process reads alike from the database
    and the queues (cached for ``ttl`` seconds)."""

    def __init__(self, ctx: ServiceContext, ttl: float = DB_METRICS_TTL) -> None:
        self.ctx = ctx
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None

    def describe(self) -> list[Any]:
        return []  # collected on demand (no database query at registration)

    def collect(self) -> list[Any]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl:
                self._cached = (now, self._read())
            return self._cached[1]

    def _read(self) -> list[Any]:
        from encore.store import Clip, Job, Rating
        from encore.store.enums import JobStatus, QueueName

        families: list[Any] = []
        jobs = GaugeMetricFamily("encore_jobs", "Jobs in the database by queue and status",
                                 labels=["queue", "status"])
        durations = HistogramMetricFamily(
            "encore_job_duration_seconds",
            "Run time of finished jobs (started to finished, last attempt), by kind and outcome",
            labels=["kind", "status"])
        with self.ctx.connection(write=False) as conn:
            counts = {(str(q), str(s)): int(n) for q, s, n in conn.execute(
                sa.select(Job.queue, Job.status, sa.func.count()).group_by(Job.queue, Job.status))}
            for queue in QueueName:
                for status in JobStatus:
                    jobs.add_metric([queue.value, status.value],
                                    counts.get((str(queue), str(status)), 0))
            duration = _duration_expr(conn.dialect.name, Job.started_at, Job.finished_at)
            columns = [sa.func.count(), sa.func.coalesce(sa.func.sum(duration), 0.0)]
            columns += [sa.func.sum(sa.case((duration <= b, 1), else_=0)) for b in JOB_DURATION_BUCKETS]
            rows = conn.execute(
                sa.select(Job.kind, Job.status, *columns)
                .where(Job.status.in_([JobStatus.DONE, JobStatus.FAILED]),
                       Job.started_at.is_not(None), Job.finished_at.is_not(None))
                .group_by(Job.kind, Job.status)
            ).all()
            for kind, status, count, total, *cumulative in rows:
                buckets = [(str(b), int(c or 0)) for b, c in zip(JOB_DURATION_BUCKETS, cumulative, strict=True)]
                buckets.append(("+Inf", int(count)))
                durations.add_metric([kind, str(status.value if hasattr(status, "value") else status)],
                                     buckets, float(total or 0.0))
            audio = conn.scalar(sa.select(sa.func.coalesce(sa.func.sum(Clip.seconds), 0.0))
                                .where(Clip.audio_key.is_not(None)))
            ratings = conn.scalar(sa.select(sa.func.count()).select_from(Rating))
        families += [jobs, durations]
        generated = CounterMetricFamily("encore_generated_audio_seconds",
                                        "Seconds of audio in the clips generated so far")
        generated.add_metric([], float(audio or 0.0))
        rated = CounterMetricFamily("encore_ratings", "Ratings given so far")
        rated.add_metric([], int(ratings or 0))
        families += [generated, rated]
        if self.ctx.queues is not None:
            depth = GaugeMetricFamily("encore_queue_depth",
                                      "Messages waiting in the job queue (not yet taken by a worker)",
                                      labels=["queue"])
            for queue in QueueName:
                try:
                    depth.add_metric([queue.value], self.ctx.queues.pending_count(queue))
                except Exception:
                    logger.warning("cannot count the messages of queue %s", queue.value)
            families.append(depth)
        return families


def _metrics_registry(app: FastAPI) -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(app.state.store_collector)
        return registry
    return app.state.http_metrics.registry  # type: ignore[no-any-return]


@router.get("/metrics")
def metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response(status_code=401, headers={"www-authenticate": "Bearer"})
    return Response(generate_latest(_metrics_registry(request.app)),
                    media_type=CONTENT_TYPE_LATEST)


# --- health and readiness -------------------------------------------------------------------


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database(ctx: ServiceContext) -> str:
    with ctx.connection(write=False) as conn:
        conn.execute(sa.text("SELECT 1"))
    return ctx.engine.dialect.name


def _check_queue(ctx: ServiceContext) -> str:
    from encore.store.enums import QueueName

    if ctx.queues is None:
        return "no queue in this process"
    waiting = {q.value: ctx.queues.pending_count(q) for q in QueueName}
    return ", ".join(f"{k} {v} waiting" for k, v in waiting.items())


def _check_blobs(ctx: ServiceContext) -> str:
    ctx.blobs.exists("health/probe")  # one round trip (stat, or HEAD on S3)
    return ctx.blobs.url.split("?")[0]


def _check_models(ctx: ServiceContext) -> str:
    from encore.services.versions import PURGED_PREFIX
    from encore.store import ModelVersion, VersionStatus
    from encore.store.folders import is_blob_ref, manifest_key, ref_digest

    with ctx.reading() as session:
        active = session.execute(
            sa.select(ModelVersion.name, ModelVersion.folder)
            .where(ModelVersion.status == VersionStatus.ACTIVE, ModelVersion.ab_weight > 0)
        ).all()
    if not active:  # before the first request registers v0
        if not (ctx.settings.base_model_dir / "unet").is_dir():
            raise RuntimeError(f"no version yet and no base model at {ctx.settings.base_model_dir}")
        return "no version registered yet; the base model folder is present"
    for name, folder in active:
        if folder.startswith(PURGED_PREFIX):
            raise RuntimeError(f"active version {name} was purged")
        if is_blob_ref(folder):
            if not ctx.blobs.exists(manifest_key(ref_digest(folder))):
                raise RuntimeError(f"the files of active version {name} are not in the blob store")
        elif not (os.path.isdir(os.path.join(folder, "unet"))):
            raise RuntimeError(f"the folder of active version {name} is not on this host")
    return ", ".join(name for name, _ in active)


CHECKS = {"database": _check_database, "queue": _check_queue, "blobs": _check_blobs,
          "models": _check_models}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    ctx = request.app.state.ctx
    results: dict[str, dict[str, Any]] = {}

    async def run(name: str, check: Any) -> None:
        t0 = time.perf_counter()
        try:
            detail = await anyio.to_thread.run_sync(check, ctx, abandon_on_cancel=True)
            results[name] = {"ok": True, "detail": detail}
        except Exception as exc:
            results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
        results[name]["ms"] = round((time.perf_counter() - t0) * 1000, 1)

    with anyio.move_on_after(READY_TIMEOUT):
        async with anyio.create_task_group() as tg:
            for name, check in CHECKS.items():
                tg.start_soon(run, name, check)
    for name in CHECKS:
        results.setdefault(name, {"ok": False, "detail": f"no answer within {READY_TIMEOUT:g} s"})
    ready = all(r["ok"] for r in results.values())
    if not ready:
        logger.warning("not ready: %s", {k: v["detail"] for k, v in results.items() if not v["ok"]})
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": results},
                        status_code=200 if ready else 503,
                        headers={"cache-control": "no-store"})


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add the operations routes, the request-id/metrics middleware (outermost) and the
    request id in log lines to ``app`` (called by :func:`encore.web.app.create_app`)."""
    app.state.http_metrics = HttpMetrics()
    app.state.store_collector = StoreCollector(ctx)
    app.state.http_metrics.registry.register(app.state.store_collector)
    app.include_router(router)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.http_metrics)
    logs.install(getattr(ctx.settings, "log_format", "text"))
