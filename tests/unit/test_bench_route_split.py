"""The route-split benchmark's scripted ADS server answers VHDS requests the way its conclusions assume."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2
from envoy.service.discovery.v3 import discovery_pb2

from bench.route_split import VHOST, ScriptedAds, vhds_host, vhds_name

ROUTE_CONFIG = "http.8080"


def _server(hosts: list[str], withheld: list[str]) -> ScriptedAds:
    catalogue = {
        vhds_name(ROUTE_CONFIG, host): vhds_host(
            ROUTE_CONFIG, route_components_pb2.VirtualHost(name=f"{host}:8080", domains=[host])
        ).SerializeToString()
        for host in hosts
    }
    return ScriptedAds("delta", {VHOST: catalogue}, withheld=[vhds_name(ROUTE_CONFIG, h) for h in withheld])


def _answer(ads: ScriptedAds, *subscribe: str) -> discovery_pb2.DeltaDiscoveryResponse:
    reply = ads.answer(discovery_pb2.DeltaDiscoveryRequest(type_url=VHOST, resource_names_subscribe=subscribe))
    assert reply is not None
    return discovery_pb2.DeltaDiscoveryResponse.FromString(reply[1])


def test_the_wildcard_subscription_gets_every_host_but_the_withheld_ones_named_as_their_virtual_host() -> None:
    response = _answer(_server(["a.test", "b.test", "c.test"], withheld=["b.test"]))
    assert [r.name for r in response.resources] == ["http.8080/a.test", "http.8080/c.test"]
    for resource in response.resources:
        host = route_components_pb2.VirtualHost.FromString(resource.resource.value)
        assert host.name == resource.name  # Envoy removes VHDS hosts by this name


def test_an_on_demand_name_with_the_host_headers_port_gets_the_host_under_its_alias() -> None:
    ads = _server(["a.test", "b.test"], withheld=["b.test"])
    _answer(ads)
    (resource,) = _answer(ads, "http.8080/b.test:8080").resources
    assert (resource.name, list(resource.aliases)) == ("http.8080/b.test", ["http.8080/b.test:8080"])
    assert resource.HasField("resource")


def test_an_unknown_host_is_answered_with_its_bare_name() -> None:
    ads = _server(["a.test"], withheld=[])
    _answer(ads)
    (resource,) = _answer(ads, "http.8080/nobody.test").resources
    assert list(resource.aliases) == ["http.8080/nobody.test"]
    assert not resource.HasField("resource")
