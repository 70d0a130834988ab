"""`tls.httpsRedirect` on plain-text HTTP servers, applied to the port's route config as istiod applies it.

istiod emits no redirect route: the virtual hosts of a redirecting server get `require_tls: ALL`, and Envoy
answers every plain-text request for them with a 301 to `https://`. A host of the server that no
VirtualService routes still gets a route-less virtual host, so the redirect works before any route exists
(route_configs.py builds the virtual hosts from `redirected_hosts`). A host shared with a non-redirecting
server on the same port is redirected for both (istiod merges the virtual host); that surprise is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.config.model import BoundServer
from reconciler.config.servers import describe, https_redirects, server_finding, server_hostnames
from reconciler.diagnostics import Finding, Severity


def redirected_hosts(servers: Sequence[BoundServer]) -> dict[str, BoundServer]:
    """Each host the servers redirect to HTTPS → the (first) server that redirects it."""
    redirected: dict[str, BoundServer] = {}
    for bound in servers:
        if https_redirects(bound):
            for host in [h for h, _ in bound.virtual_hosts] + server_hostnames(bound):
                redirected.setdefault(host, bound)
    return redirected


def shared_host_warnings(servers: Sequence[BoundServer], redirected: Mapping[str, BoundServer]) -> list[Finding]:
    findings: list[Finding] = []
    if not redirected:  # the common case: no need to collect every server's hosts
        return findings
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
    return findings
