"""The value limits every field shares (validation/values.py), and the loader's note that a spec holds none
they could object to (`Resource.plain_spec`), which lets validation skip the walk of that spec."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.diagnostics import Finding, Location
from reconciler.manifests.loader import load_manifests
from reconciler.manifests.model import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    ObjectMeta,
    Resource,
    StringMatch,
    VirtualServiceSpec,
)
from reconciler.validation.common import ResourceReport
from reconciler.validation.values import check_values

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [a.example.com]
  http:
  - name: r0
    match:
    - uri: {prefix: /api/}
      headers: {x-team: {exact: blue}}
    route:
    - destination: {host: a.internal, port: {number: 8080}}
      weight: 90
    - destination: {host: b.internal}
      weight: 10
    timeout: 5s
    mirrorPercentage: {value: 12.5}
"""
# Where each kind of value sits in VS, and a value of that kind beyond what these checks accept.
BEYOND = {
    "number: 8080": ("number: 99999999999", "value-out-of-range"),
    "weight: 10": ("weight: -3000000000", "value-out-of-range"),
    "timeout: 5s": ("timeout: 3000000h", "invalid-duration"),
    "value: 12.5": ("value: .nan", "not-a-number"),
}


def load(text: str) -> Resource:
    manifests = load_manifests({"vs.yaml": text.encode()})
    assert not manifests.findings, manifests.findings
    (resource,) = manifests.resources
    return resource


def walked(resource: Resource) -> list[Finding]:
    """What the checks find when they walk the whole spec, whatever the loader noted."""
    report = ResourceReport(dataclasses.replace(resource, plain_spec=None))
    check_values(report)
    return report.findings


def found(resource: Resource) -> list[Finding]:
    report = ResourceReport(resource)
    check_values(report)
    return report.findings


def test_a_spec_of_plain_values_is_noted_as_such() -> None:
    resource = load(VS)
    assert resource.plain_spec is resource.spec
    assert found(resource) == walked(resource) == []


def test_each_value_beyond_the_limits_is_found_where_it_is_written() -> None:
    for written, (beyond, code) in BEYOND.items():
        text = VS.replace(written, beyond)
        resource = load(text)
        assert resource.plain_spec is None, beyond
        (finding,) = found(resource)
        assert finding.code == code
        line = next(i for i, row in enumerate(text.splitlines(), 1) if beyond in row)
        assert finding.location.line == line


def test_a_resource_given_another_spec_is_walked_again() -> None:
    resource = load(VS)
    rule = dataclasses.replace(resource.spec.http[0], mirror_percent=2**40)
    changed = dataclasses.replace(resource, spec=dataclasses.replace(resource.spec, http=[rule]))
    assert [f.code for f in found(changed)] == ["value-out-of-range"]


def test_text_that_cannot_be_encoded_is_found_in_fields_lists_and_mappings() -> None:
    # YAML cannot carry a lone surrogate (libyaml refuses the escape), so such a spec is made in code.
    bad = "\ud800"
    spec = VirtualServiceSpec(
        hosts=["a.example.com", f"{bad}.example.com"],
        http=[
            HTTPRoute(
                name=bad,
                match=[HTTPMatchRequest(headers={bad: StringMatch(exact="x"), "x-ok": StringMatch(exact=bad)})],
                route=[HTTPRouteDestination(destination=Destination(host="a.internal"))],
            )
        ],
    )
    resource = Resource("VirtualService", "networking.istio.io/v1", ObjectMeta(name="vs"), spec, Location("f", 1, 1))
    # A host, a rule name, a header name and a header value.
    assert [f.code for f in found(resource)] == ["invalid-text"] * 4


SCALARS = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.sampled_from([".nan", ".inf", "-.inf", "1.5", "0.0", "1e400"]),
    st.sampled_from(["5s", "300000h", "3000000h", "1ms", "2562047h47m16s", "2562048h"]),
    st.text(alphabet=st.sampled_from("aé/-.x😀"), min_size=1, max_size=6).map(lambda t: f'"{t}"'),
)
PLACES = ["number: 8080", "weight: 10", "weight: 90", "timeout: 5s", "value: 12.5", "prefix: /api/", "exact: blue"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PLACES), SCALARS), max_size=4))
def test_the_note_never_hides_a_finding(edits: list[tuple[str, str]]) -> None:
    text = VS
    for place, scalar in edits:
        key = place.split(":")[0]
        text = text.replace(place, f"{key}: {scalar}")
    manifests = load_manifests({"vs.yaml": text.encode()})
    for resource in manifests.resources:
        assert found(resource) == walked(resource)
        if walked(resource):
            assert resource.plain_spec is None


def test_a_field_of_any_shape_is_never_noted_plain() -> None:
    rule = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: a.internal
  trafficPolicy:
    loadBalancer:
      localityLbSetting: {enabled: true}
"""
    resource = load(rule)
    assert resource.plain_spec is None


def test_metadata_has_no_say() -> None:
    resource = load(VS.replace("metadata: {name: vs}", "metadata: {name: vs, labels: {team: café}}"))
    assert resource.plain_spec is resource.spec
