"""NACK escapes: no config that passes validation and preflight is rejected by a real Envoy.

Hypothesis generates VirtualServices that look like what people write, with mutations drawn from what
breaks gateways in practice (bad regexes and RE2 program sizes, header names and `%VAR%` values, statuses,
redirect codes, weights, durations, percentages, string matches, rewrites, retries, faults, CORS). Each case
gets its own host, and cases are checked in batches so one Envoy serves them all:

1. validation (the pure pipeline) accepts or rejects each case;
2. the accepted ones are built into one snapshot, which the Envoy preflight checks; a route it rejects is
   traced back to its case, which is set aside and the rest rebuilt until the preflight accepts the batch;
3. the batch is served over ADS to a real Envoy, which must ACK it: a NACK here is an escape;
4. every case the preflight caught is served alone and must be NACKed: the preflight is no stricter than Envoy.

Generation is derandomized (same cases on every run) and separate from checking, so 1,000+ cases cost a
few dozen Envoy runs instead of a thousand.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reconciler.cli.localrun import LOOPBACK, free_port, free_ports
from reconciler.diagnostics import Finding, Severity
from reconciler.pipeline import Build, build
from reconciler.translate import TranslateOptions
from reconciler.validation import check_certificate_files
from reconciler.validation.localfiles import local_file_probe
from reconciler.validation.preflight import Failure, Preflight, PreflightOptions
from tests.conformance.harness import FLEET, FLEET_MANIFEST, XdsHarness

CASES = 1200
BATCH = 60
_VS_NAME = re.compile(r"/virtual-service/(c\d+)$")

# ------------------------------------------------------------------------------------------ generation
# Every value pool has a valid part (what people write) and a mutated part (what breaks gateways in practice).
# A clean case draws only valid values; a mutated case draws from both, so it may carry several mutations.

POOLS: dict[str, tuple[list[Any], list[Any]]] = {
    "header_name": (["x-user", "x-env", "user-agent", ":authority", ":path", "@request.auth.claims.sub"], ["x y", ""]),
    "text": (["alice", "v1", "a b", "é"], ["", "x\ny"]),
    "prefix": (["/a", "a"], [""]),
    "regex": (
        ["/api/.*", "^/v[0-9]+/", ".*", "[a-zA-Z0-9]{30}", r"\d+", "a{1000}"],
        ["(a+", "/(?!admin).*", "[z-a]", "", "*", "a{1001}", "(?:[a-z]{1000}){1}" * 33, r"\C"],
    ),
    "method_regex": (["GET|POST"], ["(GET"]),
    "uri_prefix": (["/", "/api", "/api/v1", "/a b", "/é"], [""]),
    "uri_exact": (["/health", "/x?y"], [""]),
    "header_value": (
        [
            "ok",
            "%HOSTNAME%",
            "%REQ(x-user)%",
            "%START_TIME(%s)%",
            "%DOWNSTREAM_REMOTE_ADDRESS%",
            "100%%",
            '%UPSTREAM_METADATA(["a","b"])%',
            "%ENVIRONMENT(HOME)%",
        ],
        ["%NOT_A_FIELD%", "%req(x)%", "abc%", "a\nb", "\x01"],
    ),
    "op_name": (["x-added", "x-env", "x-other"], [":path", ":authority", "host", "Host", "", "x y"]),
    "duration": (["1s", "500ms", "1500ms", "1h30m", "1.5s", "2562047h"], ["0s", "1us", "2562048h", "1d"]),
    "percentage": ([0, 0.0001, 12.5, 100], [0.00001, 100.5, -1, math.nan, math.inf]),
    "status": ([200, 204, 302, 404, 503, 599], [100, 199, 600, 601]),
    "weight": ([None, 1, 25, 75, 100, 2**31 - 1], [-1, 0, 2**32]),
    "host": (["svc.example.com"], ["*", "bad_host.example.com", "nothing.example.com"]),
    "subset": ([None, "v1", "v2"], ["Bad_Subset", "v9"]),
    "port": ([None, 80], [0, 81]),
    "match_port": ([None], [0, 65536]),
    "redirect_uri": (["/new", "/a b"], [""]),
    "authority": (["b.example.com"], ["bad authority"]),
    "scheme": ([None, "https", "http"], ["ftp"]),
    "redirect_port": ([None, 8443], [70000]),
    "redirect_code": ([None, 301, 302, 303, 307, 308], [300, 304, 399, 200]),
    "body": ([None, {"string": "hello"}, {"bytes": "aGVsbG8="}], [{"bytes": "!!"}, {"string": "%s"}]),
    "attempts": ([1, 3, 0], [-1]),
    "retry_on": ([None, "5xx", "5xx,503", "gateway-error,retriable-4xx"], ["bogus", "5xx, 503", "999"]),
    "grpc_status": (["UNAVAILABLE", "NOT_FOUND"], ["NOPE"]),
    "rewrite_uri": (["/v2", "/"], [""]),
    "regex_rewrite": (["/y", r"/\1"], [""]),
    "cors_method": (["GET", "POST", "*"], ["PUTT"]),
    "cors_header": (["x-a", "*"], ["x a"]),
}


def value(name: str, bad: bool) -> st.SearchStrategy[Any]:
    """A mutated case still mostly holds valid values: each field is mutated one time in five."""
    good, mutated = POOLS[name]
    if not bad:
        return st.sampled_from(good)
    return st.one_of(*[st.sampled_from(good)] * 4, st.sampled_from(mutated))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def compact(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None and v != {} and v != []}


def string_match(bad: bool, regex_pool: str = "regex") -> st.SearchStrategy[dict[str, Any]]:
    one = st.one_of(
        st.builds(lambda v: {"exact": v}, value("text", bad)),
        st.builds(lambda v: {"prefix": v}, value("prefix", bad)),
        st.builds(lambda v: {"regex": v}, value(regex_pool, bad)),
        st.just({}),
    )
    return st.one_of(one, st.builds(lambda a, b: {**a, **b}, one, one)) if bad else one


def match(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    uri = st.one_of(
        st.builds(lambda v: {"prefix": v}, value("uri_prefix", bad)),
        st.builds(lambda v: {"exact": v}, value("uri_exact", bad)),
        st.builds(lambda v: {"regex": v}, value("regex", bad)),
    )
    if bad:
        uri = st.one_of(uri, st.builds(lambda v: {"prefix": "/p", "regex": v}, value("regex", bad)))
    return st.builds(
        compact,
        uri=optional(uri),
        headers=optional(st.dictionaries(value("header_name", bad), string_match(bad), max_size=2)),
        queryParams=optional(st.dictionaries(st.sampled_from(["q", "page"]), string_match(bad), max_size=1)),
        withoutHeaders=optional(st.dictionaries(value("header_name", bad), string_match(bad), max_size=1)),
        method=optional(string_match(bad, "method_regex")),
        authority=optional(string_match(bad)),
        ignoreUriCase=optional(st.booleans()),
        port=value("match_port", bad),
    )


def destination(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda host, subset, port, weight: compact(
            destination=compact(host=host, subset=subset, port={"number": port} if port is not None else None),
            weight=weight,
        ),
        value("host", bad),
        value("subset", bad),
        value("port", bad),
        value("weight", bad),
    )


def header_operations(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    ops = st.builds(
        compact,
        set=optional(st.dictionaries(value("op_name", bad), value("header_value", bad), max_size=2)),
        add=optional(st.dictionaries(value("op_name", bad), value("header_value", bad), max_size=1)),
        remove=optional(st.lists(value("op_name", bad), max_size=2, unique=True)),
    )
    return st.builds(compact, request=optional(ops), response=optional(ops))


def action(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    redirect = st.builds(
        compact,
        uri=value("redirect_uri", bad),
        authority=optional(value("authority", bad)),
        scheme=value("scheme", bad),
        port=value("redirect_port", bad),
        redirectCode=value("redirect_code", bad),
    )
    direct = st.builds(lambda status, body: compact(status=status, body=body), value("status", bad), value("body", bad))
    routes = st.builds(lambda r: {"route": r}, st.lists(destination(bad), min_size=1, max_size=3))
    return st.one_of(
        routes,
        routes,
        routes,
        st.builds(lambda r: {"redirect": r}, redirect),
        st.builds(lambda d: {"directResponse": d}, direct),
    )


def percentage(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda v: {"value": v}, value("percentage", bad))


def policies(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Settings beside the action."""
    retries = st.builds(
        compact,
        attempts=value("attempts", bad),
        retryOn=value("retry_on", bad),
        perTryTimeout=optional(value("duration", bad)),
    ).map(lambda r: r if r.get("attempts") or bad else {"attempts": 0})
    fault = st.one_of(
        st.builds(lambda s, p: {"abort": {"httpStatus": s, "percentage": p}}, value("status", bad), percentage(bad)),
        st.builds(
            lambda s, p: {"abort": {"grpcStatus": s, "percentage": p}}, value("grpc_status", bad), percentage(bad)
        ),
        st.builds(lambda d, p: {"delay": {"fixedDelay": d, "percentage": p}}, value("duration", bad), percentage(bad)),
    )
    rewrite = st.one_of(
        st.builds(lambda u: {"uri": u}, value("rewrite_uri", bad)),
        st.builds(lambda a: {"authority": a}, value("authority", bad)),
        st.builds(
            lambda m, r: {"uriRegexRewrite": {"match": m, "rewrite": r}},
            value("regex", bad),
            value("regex_rewrite", bad),
        ),
    )
    cors = st.builds(
        compact,
        allowOrigins=optional(st.lists(string_match(bad), max_size=2).map(lambda o: [x for x in o if x] or None)),
        allowMethods=optional(st.lists(value("cors_method", bad), max_size=2)),
        allowHeaders=optional(st.lists(value("cors_header", bad), max_size=2)),
        maxAge=optional(st.sampled_from(["24h", "10s"] + (["1500ms", "0s"] if bad else []))),
    )
    return st.builds(
        compact,
        headers=optional(header_operations(bad)),
        timeout=optional(value("duration", bad)),
        retries=optional(retries),
        fault=optional(fault),
        rewrite=optional(rewrite),
        corsPolicy=optional(cors),
        mirror=optional(st.just({"host": "svc.example.com"})),
        mirrorPercentage=optional(percentage(bad)),
    )


# Settings istio allows only beside `route`; a clean rule with a redirect or direct response drops them.
ROUTE_ONLY = ("fault", "rewrite", "mirror", "mirrorPercentage")


def rule(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    def combine(action: dict[str, Any], extra: dict[str, Any], matches: list[dict[str, Any]] | None) -> dict[str, Any]:
        if "route" not in action and not bad:
            extra = {k: v for k, v in extra.items() if k not in ROUTE_ONLY}
        return {**action, **extra, **compact(match=matches)}

    return st.builds(combine, action(bad), policies(bad), optional(st.lists(match(bad), min_size=1, max_size=2)))


VIRTUAL_SERVICE = st.one_of(
    st.lists(rule(bad=False), min_size=1, max_size=3),
    st.lists(rule(bad=True), min_size=1, max_size=3),
)

# ------------------------------------------------------------------------------------------------ check


def base_manifests(port: int) -> str:
    return f"""{FLEET_MANIFEST}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{app: conformance-gateway}}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc}}
spec:
  hosts: [svc.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, labels: {{version: v1}}}}, {{address: 127.0.0.1, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc}}
spec:
  host: svc.example.com
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
"""


def case_document(index: int, rules: list[dict[str, Any]]) -> str:
    spec = {"hosts": [f"c{index}.example.com"], "gateways": ["gw"], "http": rules}
    document = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": f"c{index}"}}
    return yaml.safe_dump({**document, "spec": spec}, sort_keys=False, allow_unicode=True)


@dataclass
class Tally:
    what: str
    cases: int = 0
    rejected_by_validation: int = 0
    caught_by_preflight: int = 0
    acked: int = 0
    batches: int = 0
    preflight_caught: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.cases} generated {self.what}: {self.rejected_by_validation} rejected by validation, "
            f"{self.caught_by_preflight} caught only by the Envoy preflight, {self.acked} ACKed by Envoy "
            f"({self.batches} batches); escapes: 0"
        )


class Checker:
    """Runs batches of cases (case index → YAML documents) through validation, preflight and a real Envoy."""

    def __init__(
        self, harness: XdsHarness, preflight: Preflight, base: str, what: str, ports: dict[int, int] | None = None
    ) -> None:
        self.harness = harness
        self.preflight = preflight
        self.base = base
        self.tally = Tally(what)
        self.case_of_port = {port: case for case, port in (ports or {}).items()}

    def build(self, documents: dict[int, str]) -> Build:
        files = {"base.yaml": self.base.encode(), **{f"c{i}.yaml": d.encode() for i, d in documents.items()}}
        return build(files, TranslateOptions(default_bind=LOOPBACK))

    def errors(self, result: Build) -> list[Finding]:
        """What the daemon refuses a revision for, with certificate paths known to be on the Envoy host."""
        files = check_certificate_files(result.manifests, local_file_probe, Severity.ERROR)
        return [f for f in (*result.findings, *files) if f.is_error]

    def check_batch(self, documents: dict[int, str]) -> None:
        self.tally.batches += 1
        self.tally.cases += len(documents)
        result = self.build(documents)
        rejected = {_case_of_resource(f.resource) for f in self.errors(result)}
        assert None not in rejected, f"an error outside the cases: {[str(f) for f in self.errors(result)]}"
        self.tally.rejected_by_validation += len(rejected)
        accepted = {i: d for i, d in documents.items() if i not in rejected}
        caught: dict[int, str] = {}
        while accepted:
            result = self.build(accepted)
            assert not self.errors(result), [str(f) for f in self.errors(result)]
            snapshot = result.snapshots[FLEET]
            failures = self.preflight.failures(FLEET, snapshot)
            if not failures:
                self.harness.serve(snapshot)  # raises with Envoy's error on a NACK: an escape
                self.tally.acked += len(accepted)
                break
            for index in set(self._cases_of(failures, accepted)):
                caught[index] = accepted.pop(index)
        self.tally.caught_by_preflight += len(caught)
        print(self.tally.summary(), flush=True)
        for document in caught.values():
            self._expect_nack(document)

    def _cases_of(self, failures: tuple[Failure, ...], accepted: dict[int, str]) -> Iterator[int]:
        for failure in failures:
            source = failure.route.get("metadata", {}).get("filter_metadata", {}).get("istio", {}).get("config", "")
            found = _VS_NAME.search(str(source))
            port = int(failure.name.rpartition("_")[2]) if failure.kind == "listener" else None
            if found is not None:
                yield int(found.group(1)[1:])
            elif port in self.case_of_port:
                yield self.case_of_port[port]
            else:  # not one route or listener: find the culprits case by case
                yield from (i for i, d in accepted.items() if self.preflight.failures(FLEET, self._alone(d)))
                return

    def _alone(self, document: str) -> Any:
        return self.build({0: document}).snapshots[FLEET]

    def _expect_nack(self, document: str) -> None:
        self.tally.preflight_caught.append(document)
        with pytest.raises(AssertionError, match="NACKed"):
            # The harness polls until its timeout and then reports Envoy's NACK; Envoy answers in milliseconds.
            self.harness.serve(self._alone(document), timeout=2)


def _case_of_resource(ref: str) -> int | None:
    found = re.fullmatch(r"(?:VirtualService|Gateway) default/[cg](\d+)", ref)
    return int(found.group(1)) if found else None


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XdsHarness]:
    started = XdsHarness(tmp_path_factory.mktemp("nack-escape")).start()
    yield started
    started.stop()


def generated_cases() -> list[list[dict[str, Any]]]:
    cases: list[list[dict[str, Any]]] = []

    @settings(
        max_examples=CASES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(VIRTUAL_SERVICE)
    def collect(rules: list[dict[str, Any]]) -> None:
        cases.append(rules)

    collect()
    return cases


def test_no_config_envoy_rejects_gets_past_validation_and_preflight(harness: XdsHarness, tmp_path: Path) -> None:
    cases = generated_cases()
    assert len(cases) >= 1000
    documents = {i: case_document(i, rules) for i, rules in enumerate(cases)}
    with Preflight() as preflight:
        checker = Checker(harness, preflight, base_manifests(free_port()), "VirtualServices")
        indexes = sorted(documents)
        for start in range(0, len(indexes), BATCH):
            checker.check_batch({i: documents[i] for i in indexes[start : start + BATCH]})
    tally = checker.tally
    (tmp_path / "preflight-caught.yaml").write_text("\n---\n".join(tally.preflight_caught))
    print(tally.summary())
    assert tally.cases == len(cases)
    assert tally.rejected_by_validation + tally.caught_by_preflight + tally.acked == tally.cases
    # The generator exercises both sides: plenty of configs Envoy takes, plenty that validation stops.
    assert tally.acked >= 200
    assert tally.rejected_by_validation >= 200


# --------------------------------------------------------------------------------- gateway servers
# Each case is a Gateway with one server on its own port (certificate files on this machine, which is the
# Envoy host here) and a VirtualService routing its host, so listener-level rejections are attributed too.

GATEWAY_CASES = 240
GATEWAY_BATCH = 40
SERVER_POOLS: dict[str, tuple[list[Any], list[Any]]] = {
    "kind": (["HTTP", "HTTPS", "HTTPS-MUTUAL", "TLS-PASSTHROUGH", "TLS-SIMPLE"], ["HTTP+TLS", "HTTPS-BARE"]),
    "hosts": (["{host}", "*.example.com"], ["{short}", "*{host}", "other/{host}", "{host}/x"]),
    "bind": ([None, "127.0.0.1"], ["not-an-ip", "unix://relative.sock", "::1"]),
    "certificate": (["CERT"], ["MISSING", "KEY", "EMPTY"]),
    "key": (["KEY"], ["MISSING", "CERT"]),
    "ca": (["CA"], ["MISSING", "KEY"]),
    "min_version": ([None, "TLSV1_2"], ["TLSV1_3", "TLSV1_0"]),
    "max_version": ([None, "TLSV1_3"], ["TLSV1_2", "TLSV1_1"]),
    "ciphers": (
        [None, ["ECDHE-ECDSA-AES128-GCM-SHA256"], ["[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]"]],
        [["NOPE"], ["-AES128-SHA"], ["TLS_AES_128_GCM_SHA256"], ["ECDHE-RSA-AES128-GCM-SHA256"]],
    ),
    "redirect": ([False], [True]),
}


def server_value(name: str, bad: bool) -> st.SearchStrategy[Any]:
    good, mutated = SERVER_POOLS[name]
    return st.sampled_from(good) if not bad else st.one_of(*[st.sampled_from(good)] * 3, st.sampled_from(mutated))


def server_template(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: server_value(name, bad) for name in SERVER_POOLS})


SERVER_TEMPLATE = st.one_of(server_template(False), server_template(True))


def gateway_case_documents(index: int, port: int, template: dict[str, Any], files: dict[str, str]) -> str:
    host = f"h{index}.example.com"
    kind = template["kind"]
    protocol = {"HTTP": "HTTP", "HTTP+TLS": "HTTP", "TLS-PASSTHROUGH": "TLS", "TLS-SIMPLE": "TLS"}.get(kind, "HTTPS")
    server: dict[str, Any] = {
        "port": {"number": port, "name": "p", "protocol": protocol},
        "hosts": [h.format(host=host, short=f"h{index}") for h in [template["hosts"]]],
    }
    if template["bind"]:
        server["bind"] = template["bind"]
    tls: dict[str, Any] = {}
    if kind in ("HTTPS", "HTTPS-MUTUAL", "TLS-SIMPLE", "HTTP+TLS"):
        tls = {
            "mode": "MUTUAL" if kind == "HTTPS-MUTUAL" else "SIMPLE",
            "serverCertificate": files[template["certificate"]],
            "privateKey": files[template["key"]],
        }
        if kind == "HTTPS-MUTUAL":
            tls["caCertificates"] = files[template["ca"]]
        tls.update(
            compact(
                minProtocolVersion=template["min_version"],
                maxProtocolVersion=template["max_version"],
                cipherSuites=template["ciphers"],
            )
        )
    elif kind == "TLS-PASSTHROUGH":
        tls = {"mode": "PASSTHROUGH"}
    if template["redirect"] and protocol == "HTTP":
        tls["httpsRedirect"] = True
    if tls:
        server["tls"] = tls
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": f"g{index}"},
        "spec": {"selector": {"app": "conformance-gateway"}, "servers": [server]},
    }
    spec: dict[str, Any] = {"hosts": [host], "gateways": [f"g{index}"]}
    destination = {"destination": {"host": "svc.example.com", "port": {"number": 80}}}
    if kind == "TLS-PASSTHROUGH":
        spec["tls"] = [{"match": [{"sniHosts": [host]}], "route": [destination]}]
    elif kind == "TLS-SIMPLE":
        spec["tcp"] = [{"route": [destination]}]
    else:
        spec["http"] = [{"route": [destination]}]
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": f"c{index}"}}
    return yaml.safe_dump_all([gateway, {**vs, "spec": spec}], sort_keys=False)


def generated_servers() -> list[dict[str, Any]]:
    templates: list[dict[str, Any]] = []

    @settings(
        max_examples=GATEWAY_CASES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(SERVER_TEMPLATE)
    def collect(template: dict[str, Any]) -> None:
        templates.append(template)

    collect()
    return templates


def certificate_files(folder: Path) -> dict[str, str]:
    """A real certificate and key on this machine (the Envoy host of the test), and wrong files beside them."""
    cert, key, empty = folder / "cert.pem", folder / "key.pem", folder / "empty.pem"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=example.com", "-days", "2"]
    subprocess.run(command, check=True, capture_output=True)
    empty.write_text("")
    return {"CERT": str(cert), "KEY": str(key), "CA": str(cert), "EMPTY": str(empty), "MISSING": str(folder / "no.pem")}


def test_no_gateway_config_envoy_rejects_gets_past_validation_and_preflight(
    harness: XdsHarness, tmp_path: Path
) -> None:
    templates = generated_servers()
    files = certificate_files(tmp_path)
    base_port, *case_ports = free_ports(len(templates) + 1)  # a shared port would be a conflict of our making
    ports = dict(enumerate(case_ports))
    documents = {i: gateway_case_documents(i, ports[i], t, files) for i, t in enumerate(templates)}
    with Preflight(PreflightOptions(files_are_local=True)) as preflight:
        checker = Checker(harness, preflight, base_manifests(base_port), "Gateway servers", ports)
        for start in range(0, len(documents), GATEWAY_BATCH):
            checker.check_batch({i: documents[i] for i in range(start, min(start + GATEWAY_BATCH, len(documents)))})
    tally = checker.tally
    (tmp_path / "preflight-caught.yaml").write_text("\n---\n".join(tally.preflight_caught))
    print(tally.summary())
    assert tally.rejected_by_validation + tally.caught_by_preflight + tally.acked == tally.cases == GATEWAY_CASES
    assert tally.acked >= 50
    assert tally.rejected_by_validation >= 50
