"""A long-running Envoy that checks route changes in milliseconds (effectful; used by `preflight`).

`envoy --mode validate` costs a process start per check, 60 to 90 ms before it reads a byte of config, which
is most of a one-VirtualService change's preflight. This Envoy starts once and is then fed each check over
ADS by a private `AdsServer` on 127.0.0.1, as a fleet node would be; it ACKs or NACKs a new route
configuration in about a millisecond (../shared/reference/envoy-measurements.md).

It only ever answers "accepted". It checks the route configurations of a change that touched nothing
else (`preflight_delta` cut them down to the changed virtual hosts), carried by their listeners, which
Envoy accepted before; Envoy validates a RouteConfiguration that arrives over RDS with the same code as
one inlined in a static listener. A NACK, a timeout or a dead process is "cannot tell": the caller then
runs the usual `--mode validate` check, which also narrows a rejection down to its route. The listeners
bind no socket and terminate no TLS, Envoy has no admin listener, and a change with clusters never
reaches it: it reads no certificate, resolves no DNS name and opens no connection but the one to its ADS
server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import structlog
from envoy.config.listener.v3 import listener_pb2

from reconciler.cli.bootstrap import envoy_bootstrap
from reconciler.translate.snapshot import LISTENER, ROUTE, Snapshot, XdsResource
from reconciler.xds.server import AdsServer, XdsEvent, start_grpc_server

log = structlog.get_logger("reconciler.preflight")

FLEET = "preflight"
STARTUP_TIMEOUT = 20.0  # seconds for Envoy to start and connect
CHECK_TIMEOUT = 10.0  # seconds for one check's ACKs


class LiveEnvoy:
    """One Envoy process and its private ADS server, started on first use, restarted after it dies."""

    def __init__(self, envoy: str, workdir: Path) -> None:
        self._envoy = envoy
        self._workdir = workdir
        self._lock = threading.Lock()  # one check at a time: there is one Envoy
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ads: AdsServer | None = None
        self._server: grpc.aio.Server | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._connected = False
        self._closed = False
        self._target = ""  # the snapshot version being checked
        self._verdict: str | None = None  # "ACK", or "NACK: <Envoy's error>"

    def accepts(self, subject: Snapshot) -> bool:
        """Whether Envoy ACKed every resource of `subject`; False when it NACKed or could not tell."""
        unbound = _unbound(subject)
        with self._lock:
            if self._closed:
                return False
            for _ in range(2):  # an Envoy that died since the last check is started again, once
                try:
                    self._ensure_running()
                    return self._check(unbound)
                except _Exited:
                    self._stop()
                except _FAILURES as err:
                    return self._unavailable(err)
            return self._unavailable(_Exited("the live Envoy exited during two checks"))

    def start(self) -> None:
        """Start Envoy now, so that the first check does not wait for it."""
        with self._lock:
            if self._closed:
                return
            try:
                self._ensure_running()
            except _FAILURES as err:
                self._unavailable(err)

    def _unavailable(self, error: Exception) -> bool:
        log.warning("preflight.live_unavailable", error=str(error), phase="Gate")
        self._stop()
        return False

    @property
    def pid(self) -> int | None:
        """The Envoy's process id while it runs."""
        return self._process.pid if self._alive() and self._process is not None else None

    def close(self) -> None:
        """Stop Envoy for good: a later start or check does nothing."""
        with self._lock:
            self._closed = True
            self._stop()

    # ------------------------------------------------------------------ one check

    def _check(self, subject: Snapshot) -> bool:
        assert self._loop is not None and self._ads is not None
        with self._changed:
            self._target, self._verdict = subject.version, None
        self._loop.call_soon_threadsafe(self._ads.set_fleet_snapshot, FLEET, subject)
        with self._changed:
            if not self._changed.wait_for(lambda: self._verdict is not None or not self._connected, CHECK_TIMEOUT):
                raise TimeoutError(f"the live Envoy did not answer within {CHECK_TIMEOUT:g}s")
            verdict = self._verdict
        if verdict is None:
            raise _Exited("the live Envoy exited")
        if verdict != "ACK":
            log.info("preflight.live_nack", error=verdict, phase="Gate")
        return verdict == "ACK"

    def _on_event(self, event: XdsEvent) -> None:
        """On the private loop: a verdict once the node holds the whole target snapshot, or refused part of it."""
        assert self._ads is not None
        with self._changed:
            if event.kind in ("CONNECT", "DISCONNECT"):
                self._connected = event.kind == "CONNECT"
            elif event.kind == "NACK" and event.snapshot_version == self._target:
                self._verdict = f"NACK: {event.error.strip()}"
            elif event.kind == "ACK" and any(n.synced_version == self._target for n in self._ads.nodes(FLEET)):
                self._verdict = "ACK"
            self._changed.notify_all()

    # ------------------------------------------------------------------ the process and its server

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _ensure_running(self) -> None:
        if self._alive() and self._connected:
            return
        self._stop()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="preflight-live", daemon=True)
        self._thread.start()
        self._process = asyncio.run_coroutine_threadsafe(self._start(), loop).result(STARTUP_TIMEOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with self._changed:  # polled: nothing notifies when the process exits before it connects
            while not self._connected and self._alive() and time.monotonic() < deadline:
                self._changed.wait(0.05)
        if not self._connected:
            raise RuntimeError(f"the live Envoy did not connect within {STARTUP_TIMEOUT:g}s")
        log.info("preflight.live_started", pid=self._process.pid, phase="Gate")

    async def _start(self) -> subprocess.Popen[bytes]:
        """The ADS server, then Envoy: both from the private loop's thread, which lives as long as they do
        (the kernel's parent-death signal follows the thread that started the process, not the process)."""
        ads = AdsServer("gateway-reconciler-preflight")
        ads.set_known_fleets([FLEET])
        ads.set_fleet_snapshot(FLEET, Snapshot.empty())
        ads.subscribe(self._on_event)
        self._ads = ads
        self._server, port = await start_grpc_server(ads, "127.0.0.1:0")
        bootstrap = envoy_bootstrap(FLEET, "preflight", f"127.0.0.1:{port}", 0)
        del bootstrap["admin"]  # nothing reads it: no port to bind
        config = self._workdir / "live-envoy.json"
        config.write_text(json.dumps(bootstrap))
        command = [self._envoy, "-c", str(config), "-l", "error", "--disable-hot-restart", "--concurrency", "1"]
        setpriv = shutil.which("setpriv")
        if setpriv:  # if the daemon dies without closing it (SIGKILL), the kernel ends this Envoy too
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        loop, self._loop = self._loop, None
        if loop is not None:
            if self._server is not None:
                with contextlib.suppress(TimeoutError, RuntimeError):  # a wedged server must not fail the check
                    asyncio.run_coroutine_threadsafe(self._server.stop(grace=None), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            if not loop.is_running():  # else its daemon thread ends with the process
                loop.close()
        self._server, self._ads, self._thread, self._connected = None, None, None, False


class _Exited(RuntimeError):
    """The Envoy process ended during a check."""


_FAILURES = (OSError, RuntimeError, TimeoutError, grpc.RpcError)


def _unbound(subject: Snapshot) -> Snapshot:
    """The route configurations of `subject`, carried by its listeners made inert: they bind no socket and
    terminate no TLS (so no certificate file or secret is read). Envoy accepted these listeners before;
    they are here only to subscribe to the route configurations by name, as on a gateway."""
    resources = list(subject.of_type(ROUTE).values())
    for listener in subject.of_type(LISTENER).values():
        message = listener_pb2.Listener.FromString(listener.body)
        message.bind_to_port.value = False
        for chain in message.filter_chains:
            chain.ClearField("transport_socket")
        resources.append(XdsResource.of(message))
    return Snapshot.of_resources(resources)


__all__ = ["LiveEnvoy"]
