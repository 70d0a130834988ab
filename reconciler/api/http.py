"""The HTTP API (aiohttp, on the daemon's event loop): health, readiness, status, reconcile-now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from reconciler.api.auth import auth_middleware
from reconciler.api.webhooks import WEBHOOK_PATH, webhook_handler

if TYPE_CHECKING:
    from reconciler.daemon.app import Daemon


class ApiServer:
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        middlewares = [auth_middleware(daemon.tokens)] if daemon.tokens is not None else []
        app = web.Application(client_max_size=1024 * 1024, middlewares=middlewares)
        if daemon.webhook is not None:
            app.router.add_post(WEBHOOK_PATH, webhook_handler(daemon.webhook, daemon.on_webhook))
        app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/api/v1/status", self._status),
                web.get("/api/v1/fleets/{fleet}/history", self._history),
                web.post("/api/v1/reconcile", self._reconcile),
                web.get("/metrics", self._metrics),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port), reuse_port=False, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the asyncio server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else int(port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._daemon.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting: no configuration loaded yet"}, status=503)

    async def _status(self, _: web.Request) -> web.Response:
        return web.json_response(await self._daemon.status_json())

    async def _history(self, request: web.Request) -> web.Response:
        fleet = request.match_info["fleet"]
        try:
            limit = max(1, min(500, int(request.query.get("limit", "50"))))
        except ValueError:
            return web.json_response({"error": "limit must be a whole number"}, status=400)
        history = await self._daemon.history_json(fleet, limit)
        if history is None:
            return web.json_response({"error": f"no fleet named {fleet!r}"}, status=404)
        return web.json_response({"fleet": fleet, "history": history})

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self._daemon.metrics.render(), content_type="text/plain", charset="utf-8")

    async def _reconcile(self, _: web.Request) -> web.Response:
        self._daemon.request_reconcile()
        return web.json_response({"status": "reconcile requested"}, status=202)
