"""`tls.httpsRedirect` on plain-text HTTP servers, applied to the port's route config as istiod applies it.

istiod emits no redirect route: the virtual hosts of a redirecting server get `require_tls: ALL`, and Envoy
answers every plain-text request for them with a 301 to `https://`. A host of the server that no
VirtualService routes still gets a route-less virtual host, so the redirect works before any route exists.
A host shared with a non-redirecting server on the same port is redirected for both (istiod merges the
virtual host); that surprise is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from reconciler.config.model import BoundServer
from reconciler.config.servers import describe, https_redirects, server_finding, server_hostnames
from reconciler.diagnostics import Finding, Severity
from reconciler.translate.routes import RouteConfigPlan, VirtualHostPlan


def apply_https_redirects(
    route_config: RouteConfigPlan, servers: Sequence[BoundServer], port: int, findings: list[Finding]
) -> None:
    redirected: dict[str, BoundServer] = {}  # host → the (first) server that redirects it
    for bound in servers:
        if https_redirects(bound):
            for host in [h for h, _ in bound.virtual_hosts] + server_hostnames(bound):
                redirected.setdefault(host, bound)
    if not redirected:
        return
    _warn_shared_hosts(servers, redirected, findings)
    vhosts = [replace(v, require_tls=True) if v.host in redirected else v for v in route_config.virtual_hosts]
    served = {vhost.host for vhost in vhosts}
    vhosts += [VirtualHostPlan(host, port, (), require_tls=True) for host in redirected.keys() - served]
    route_config.virtual_hosts = sorted(vhosts, key=lambda v: v.host)


def _warn_shared_hosts(
    servers: Sequence[BoundServer], redirected: dict[str, BoundServer], findings: list[Finding]
) -> None:
    for bound in servers:
        if https_redirects(bound):
            continue
        shared = sorted(redirected.keys() & {host for host, _ in bound.virtual_hosts})
        if shared:
            owner = redirected[shared[0]]
            findings.append(
                server_finding(
                    bound,
                    Severity.WARNING,
                    "https-redirect-shared-host",
                    f"hosts {shared} on port {bound.server.port.number} are also served by {describe(owner)}, "
                    "which redirects them to HTTPS; this server's plain-text routes for them never answer",
                    "hosts",
                )
            )
