"""The HTTP API (aiohttp, on the daemon's event loop): health, readiness, status, reconcile-now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from reconciler.daemon.app import Daemon


class ApiServer:
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        app = web.Application(client_max_size=1024 * 1024)
        app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/api/v1/status", self._status),
                web.post("/api/v1/reconcile", self._reconcile),
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

    async def _reconcile(self, _: web.Request) -> web.Response:
        self._daemon.request_reconcile()
        return web.json_response({"status": "reconcile requested"}, status=202)
