"""Conformance harness: an in-process ADS server and one real Envoy, driven by manifests.

No git and no polling here, so a case costs milliseconds of control plane: build the manifests with the
real pipeline, serve the snapshot, wait until the Envoy ACKs every type of it (a NACK fails the case with
Envoy's error text), then send real requests through the gateway.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc

from reconciler.cli.localrun import LOOPBACK, EnvoyProcess
from reconciler.pipeline import build
from reconciler.translate import Credential, TranslateOptions
from reconciler.translate.snapshot import Snapshot
from reconciler.xds import AdsServer, NodeState, start_grpc_server
from tests.support import wait_for

FLEET = "conformance"
WARMING_GAUGE = "listener_manager.total_listeners_warming"
T = TypeVar("T")

FLEET_MANIFEST = f"""
apiVersion: reconciler/v1
kind: Fleet
metadata: {{name: {FLEET}}}
spec:
  selector: {{app: conformance-gateway}}
"""


class CaseRejected(AssertionError):
    """The pipeline found errors in a case's manifests (the message lists them)."""


class XdsHarness:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="conformance-xds", daemon=True)
        self.ads: AdsServer | None = None
        self._server: grpc.aio.Server | None = None
        self.xds_port = 0
        self.envoy: EnvoyProcess | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> XdsHarness:
        self._thread.start()

        async def boot() -> None:
            self.ads = AdsServer()
            self.ads.set_fleet_snapshot(FLEET, Snapshot.empty())
            self.ads.set_known_fleets([FLEET])
            self._server, self.xds_port = await start_grpc_server(self.ads, f"{LOOPBACK}:0")

        self._run(boot())
        self.envoy = EnvoyProcess(self.workdir, FLEET, "conformance-1", self.xds_port).start()
        return self

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        if self._server is not None:
            self._run(self._server.stop(grace=0.5))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def apply(
        self, manifests: str, with_fleet: bool = True, credentials: Mapping[str, Credential] | None = None
    ) -> Snapshot:
        """Build `manifests` (dedented; a Fleet named `conformance` is added) and wait for Envoy's ACK.

        `credentials` stand in for the daemon's secrets folder: what `credentialName`s resolve to (SDS).
        """
        text = textwrap.dedent(manifests)
        if with_fleet:
            text = FLEET_MANIFEST + "\n---\n" + text
        result = build({"case.yaml": text.encode()}, TranslateOptions(default_bind=LOOPBACK, credentials=credentials))
        if not result.ok:
            raise CaseRejected("\n".join(str(f) for f in result.findings if f.is_error))
        snapshot = result.snapshots[FLEET]
        self.serve(snapshot)
        return snapshot

    def serve(self, snapshot: Snapshot, timeout: float = 20.0) -> None:
        """Serve `snapshot` and wait until the node ACKed all of it; raise with Envoy's text on a NACK."""
        ads = self.ads
        assert ads is not None

        async def push() -> None:
            ads.set_fleet_snapshot(FLEET, snapshot)

        self._run(push())
        wait_for(lambda: self._synced(snapshot), timeout=timeout, interval=0.02, what=f"ACK of {snapshot.version}")
        # Envoy ACKs a new listener while it still warms (waiting for its routes or secrets) and opens its port
        # only once warm: without this wait, the first request of a case can meet a refused connection.
        wait_for(self._warm, timeout=timeout, interval=0.02, what="new listeners to finish warming")

    def _warm(self) -> bool:
        assert self.envoy is not None
        return self.envoy.stats(WARMING_GAUGE).get(WARMING_GAUGE, 1) == 0

    def _synced(self, snapshot: Snapshot) -> bool:
        ads = self.ads
        assert ads is not None

        async def check() -> bool:
            nodes = ads.nodes(FLEET)
            for node in nodes:
                if node.state() is NodeState.NACKED and node.snapshot.version == snapshot.version:
                    raise AssertionError(f"Envoy NACKed the case: {node.errors()}")
            return bool(nodes) and all(n.synced_version == snapshot.version for n in nodes)

        return self._run(check())

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}"
