"""The per-item steps of translation that a cache kept between builds may answer instead (pipeline_cache).

Each step is a pure function of its arguments, so a cache keyed on those arguments returns exactly what the
step would; these defaults compute every time.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.translate.clusters import ServiceClusters, encode_service_clusters
from reconciler.translate.routes import HttpRoutes, VirtualHostEncoder, virtual_host_entry, vs_routes


@dataclass(frozen=True)
class TranslateMemos:
    http_routes: HttpRoutes = vs_routes  # one VirtualService's routes on one gateway port
    virtual_host: VirtualHostEncoder = virtual_host_entry  # one virtual host's serialized entry
    service_clusters: ServiceClusters = encode_service_clusters  # one service's clusters and endpoints
