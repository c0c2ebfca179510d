"""The operator's side: a JSON API under /api/, /metrics for Prometheus and the /dashboard page.

These routes share the validator's port, which faces the internet: without an operator token only
loopback clients may read them; with one, every request must carry it (``Authorization: Bearer``
or ``?token=`` for the page). The dashboard is static files served from the package, no build step.
"""

from __future__ import annotations

import hmac
import ipaddress
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from pydantic import BaseModel

from godminer.clock import Clock
from godminer.engine.inventory import Inventory
from godminer.engine.miner import Miner
from godminer.engine.store import Store
from godminer.monitor import queries
from godminer.monitor.metrics import MinerCollector, registry_for, render
from godminer.protocol.metagraph import Metagraph
from godminer.settings import Settings

STATIC = Path(str(resources.files("godminer.monitor") / "static"))


class Outcome(BaseModel):
    result: Literal["win", "valid", "fail"]


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def operator_app(settings: Settings, store: Store, miner: Miner, inventory: Inventory, metagraph: Metagraph,
                 clock: Clock) -> FastAPI:
    token = settings.monitor.operator_token.get_secret_value() if settings.monitor.operator_token else None
    registry = registry_for(MinerCollector(store, inventory, clock))

    def allowed(request: Request) -> None:
        if token is None:
            if not _loopback(request.client.host if request.client else None):
                raise HTTPException(403, "operator routes answer loopback clients only (set monitor.operator_token)")
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query_params.get("token", "")
        if not hmac.compare_digest(given, token):
            raise HTTPException(401, "operator token required")

    app = FastAPI(title="godminer operator API", dependencies=[Depends(allowed)], docs_url=None, redoc_url=None)

    def run_dir(task_id: str) -> Path:
        if store.get(task_id) is None:
            raise HTTPException(404, f"no job {task_id}")
        return settings.data_dir / "jobs" / task_id

    @app.get("/api/summary")
    async def summary() -> dict[str, Any]:
        return await run_in_threadpool(queries.summary, store, clock.now())

    @app.get("/api/jobs")
    async def jobs(limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0),
                   state: str | None = None) -> dict[str, Any]:
        return await run_in_threadpool(queries.jobs_page, store, clock.now(), limit, offset, state)

    @app.get("/api/jobs/{task_id}")
    async def job(task_id: str) -> dict[str, Any]:
        record = await run_in_threadpool(store.get, task_id)
        if record is None:
            raise HTTPException(404, f"no job {task_id}")
        return {"job": queries.job_json(record, clock.now()), "events": await run_in_threadpool(store.events, task_id),
                "progress": await run_in_threadpool(queries.progress, run_dir(task_id))}

    @app.get("/api/jobs/{task_id}/logs")
    async def job_logs(task_id: str, tail: int = Query(200, ge=1, le=5000)) -> dict[str, str]:
        return await run_in_threadpool(queries.logs, run_dir(task_id), tail)

    @app.get("/api/gpus")
    async def gpus(window_s: float = Query(86400.0, gt=0, le=7 * 86400.0)) -> dict[str, Any]:
        return await run_in_threadpool(queries.gpu_timeline, store, inventory, clock.now(), window_s)

    @app.get("/api/success")
    async def success() -> list[dict[str, Any]]:
        return await run_in_threadpool(queries.success_rates, store)

    @app.get("/api/offers")
    async def offers(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return await run_in_threadpool(queries.offers, store, limit)

    @app.get("/api/standing")
    async def standing() -> dict[str, Any]:
        return queries.standing(metagraph, miner.hotkey, miner.history, settings, clock.now())

    @app.post("/api/jobs/{task_id}/outcome")
    async def record_outcome(task_id: str, outcome: Outcome) -> dict[str, str]:
        """What the validator made of a delivered task; feeds the godminer policy's P(win) and P(fail)."""
        try:
            await run_in_threadpool(miner.record_outcome, task_id, outcome.result)
        except KeyError as exc:
            raise HTTPException(404, f"no job {task_id}") from exc
        return {"task_id": task_id, "result": outcome.result}

    @app.get("/api/alerts")
    async def alerts() -> dict[str, Any]:
        return {"open": await run_in_threadpool(store.open_alerts),
                "recent": await run_in_threadpool(store.alerts, 100)}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        body = await run_in_threadpool(render, registry)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/dashboard")
    async def dashboard() -> HTMLResponse:
        return HTMLResponse((STATIC / "dashboard.html").read_text())

    @app.get("/dashboard/static/{name}")
    async def static(name: str) -> FileResponse:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(path)

    return app
