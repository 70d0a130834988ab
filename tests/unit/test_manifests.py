"""Loading manifests: typed resources, positions, and findings with file:line:column."""

from __future__ import annotations

import textwrap

import pytest

from reconciler.manifests.durations import Duration, DurationError
from reconciler.manifests.loader import load_manifests
from reconciler.manifests.model import GatewaySpec, VirtualServiceSpec


def load(text: str, name: str = "m.yaml") -> tuple[list[str], list[str]]:
    result = load_manifests({name: textwrap.dedent(text).encode()})
    return [r.ref for r in result.resources], [f"{f.location} {f.code}: {f.message}" for f in result.findings]


def test_all_three_istio_versions_share_one_schema_and_namespace_defaults() -> None:
    refs, findings = load("""
        apiVersion: networking.istio.io/v1alpha3
        kind: Gateway
        metadata: {name: a}
        spec: {servers: [{port: {number: 80, name: http, protocol: http}, hosts: ["*"]}]}
        ---
        apiVersion: networking.istio.io/v1beta1
        kind: VirtualService
        metadata: {name: b, namespace: shop}
        spec: {hosts: [x.example.com]}
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: c}
        spec: {hosts: [c.internal]}
        """)
    assert refs == ["Gateway default/a", "VirtualService shop/b", "ServiceEntry default/c"]
    assert findings == []


def test_typed_values_and_snake_case_accepted() -> None:
    result = load_manifests(
        {
            "vs.yaml": textwrap.dedent("""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: r}
        spec:
          hosts: [r.example.com]
          http:
          - timeout: 1h30m
            retries: {attempts: 3, per_try_timeout: 500ms}
            route: [{destination: {host: r.internal, port: {number: 9080}}, weight: 100}]
        """).encode()
        }
    )
    spec = result.resources[0].spec
    assert isinstance(spec, VirtualServiceSpec)
    assert spec.http[0].timeout == Duration(5_400_000_000_000)
    assert spec.http[0].retries is not None and spec.http[0].retries.per_try_timeout == Duration(500_000_000)
    assert spec.http[0].route[0].destination.port is not None
    assert spec.http[0].route[0].destination.port.number == 9080


def test_findings_point_at_the_exact_place() -> None:
    _, findings = load("""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: r}
        spec:
          hosts: [r.example.com]
          http:
          - timout: 5s
            route:
            - destination: {host: r.internal}
              weight: "heavy"
        """)
    assert findings == [
        "m.yaml:8:5 unknown-field: HTTPRoute has no field 'timout'; did you mean 'timeout'?",
        "m.yaml:11:7 wrong-type: expected a whole number, got str 'heavy'",
    ]


def test_block_style_files_point_findings_at_the_exact_place_too() -> None:
    vs = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: r
        spec:
          hosts:
          - r.example.com
          http:
          - timout: 5s  # read without libyaml's marks: the position is worked out for this finding
            route:
            - destination:
                host: r.internal
              weight: heavy
        """
    vs = textwrap.dedent(vs)
    _, findings = load("apiVersion: reconciler/v1\nkind: Fleet\nmetadata:\n  name: f\n---" + vs)  # 2nd document
    assert findings == [
        "m.yaml:14:5 unknown-field: HTTPRoute has no field 'timout'; did you mean 'timeout'?",
        "m.yaml:18:7 wrong-type: expected a whole number, got str 'heavy'",
    ]
    resources = load_manifests({"m.yaml": vs.encode()}).resources
    assert str(resources[0].location) == "m.yaml:2:1"
    assert str(resources[0].locate("spec", "http", 0, "route", 0, "destination", "host")) == "m.yaml:13:9"
    assert str(resources[0].locate("spec", "http", 0, "mirror")) == "m.yaml:10:5"  # absent: its parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Gateway\nmetadata: {name: a}\n", "m.yaml:1:1 missing-kind"),
        ("apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: a}\n", "m.yaml:1:1 wrong-api-version"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "m.yaml:2:1 unknown-kind"),
        ("apiVersion: reconciler/v1\nkind: Fleet\nmetadata: {namespace: x}\n", "m.yaml:3:1 missing-field"),
        ("a: 1\na: 2\n", "m.yaml:2:1 yaml-syntax"),
        ("- [\n", "m.yaml:2:1 yaml-syntax"),
    ],
)
def test_document_level_problems(text: str, expected: str) -> None:
    _, findings = load(text)
    assert findings and findings[0].startswith(expected), findings


def test_malformed_file_contributes_nothing_and_duplicates_are_errors() -> None:
    fleet = "apiVersion: reconciler/v1\nkind: Fleet\nmetadata: {name: f}\n"
    result = load_manifests({"a.yaml": fleet.encode(), "b.yaml": (fleet + "---\n[").encode(), "c.yml": fleet.encode()})
    assert [r.location.file for r in result.resources] == ["a.yaml", "c.yml"]
    codes = sorted(f.code for f in result.findings)
    assert codes == ["duplicate-resource", "yaml-syntax"]


def test_unknown_fields_are_warnings_when_lenient() -> None:
    text = "apiVersion: reconciler/v1\nkind: Fleet\nmetadata: {name: f}\nspec: {selectr: {a: b}}\n"
    strict = load_manifests({"f.yaml": text.encode()})
    lenient = load_manifests({"f.yaml": text.encode()}, lenient=True)
    assert [f.severity.value for f in strict.findings] == ["error"]
    assert [f.severity.value for f in lenient.findings] == ["warning"]
    assert len(lenient.resources) == 1


def test_gateway_tls_defaults_to_passthrough_as_istio() -> None:
    result = load_manifests(
        {
            "g.yaml": textwrap.dedent("""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: g}
        spec:
          servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: ["*"], tls: {}}]
        """).encode()
        }
    )
    spec = result.resources[0].spec
    assert isinstance(spec, GatewaySpec) and spec.servers[0].tls is not None
    assert spec.servers[0].tls.mode == "PASSTHROUGH"


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("500ms", 500_000_000),
        ("1.5s", 1_500_000_000),
        ("1h30m", 5_400_000_000_000),
        (".5s", 500_000_000),
        ("2us", 2_000),
        ("3ns", 3),
    ],
)
def test_go_durations(text: str, nanos: int) -> None:
    assert Duration.parse(text).nanos == nanos


@pytest.mark.parametrize("text", ["1d", "-1s", "", "5", "1.s2", "s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(DurationError):
        Duration.parse(text)
