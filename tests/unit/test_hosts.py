"""Table tests for reconciler.config.hosts.

The first tables carry the cases of istio/istio `pkg/config/host/name_test.go` and `names_test.go`
(and of `TestResolveShortnameToFQDN` in `pkg/config/model_test.go`) as data, so a behaviour change
shows up as a named, Istio-traceable failure. Cases marked "ours" are extra edge cases, checked
against the Go source by reading it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.config.hosts import (
    expand_short_name,
    intersection,
    is_wildcard,
    matches,
    most_specific_first,
    names_for_namespace,
    normalize_host,
    split_namespaced_host,
    subset_of,
)

# (description, a, b, expected). From Istio TestNameMatches, in its order.
MATCHES_CASES: list[tuple[str, str, str, bool]] = [
    ("both empty", "", "", True),
    ("only first empty", "", "foo.com", False),
    ("only second empty", "foo.com", "", False),
    ("same exact name", "foo.com", "foo.com", True),
    ("different exact names", "bar.com", "foo.com", False),
    ("different exact names, swapped", "foo.com", "bar.com", False),
    ("exact domain vs exact subdomain", "bar.foo.com", "foo.com", False),
    ("exact domain vs exact subdomain, swapped", "foo.com", "bar.foo.com", False),
    ("wildcard covers a subdomain", "*.com", "foo.com", True),
    ("wildcard covers another subdomain", "*.com", "bar.com", True),
    ("deeper wildcard covers a subdomain", "*.foo.com", "bar.foo.com", True),
    ("star covers an exact name", "*", "foo.com", True),
    ("star covers a wildcard", "*", "*.com", True),
    ("star covers a single label", "*", "com", True),
    ("star covers star", "*", "*", True),
    ("star covers the empty name", "*", "", True),
    ("wildcard covers a narrower wildcard", "*.com", "*.foo.com", True),
    ("wildcard does not cover its own apex", "foo.com", "*.foo.com", False),
    ("wildcard does not cover its own apex, swapped", "*.foo.com", "foo.com", False),
    ("long wildcard vs short exact name", "*.foo.bar.baz", "baz", False),
    ("long wildcard vs short exact name, swapped", "baz", "*.foo.bar.baz", False),
    ("long wildcard vs short wildcard", "*.foo.bar.baz", "*.baz", True),
    ("long exact name vs short wildcard", "foo.bar.baz", "*.baz", True),
    # ours
    ("suffix match is not label-aware", "*foo.com", "barfoo.com", True),
    ("dash wildcard", "*-bar.foo.com", "a-bar.foo.com", True),
    ("case-sensitive, as in Istio", "Foo.com", "foo.com", False),
    ("wildcard is case-sensitive too", "*.FOO.com", "a.foo.com", False),
    ("two unrelated wildcards", "*.foo.com", "*.bar.com", False),
    ("equal wildcards", "*.foo.com", "*.foo.com", True),
    ("star inside a name is literal", "foo.*.com", "foo.bar.com", False),
]

# From Istio TestNameSubsetOf, in its order: is a a subset of b?
SUBSET_OF_CASES: list[tuple[str, str, str, bool]] = [
    ("both empty", "", "", True),
    ("only first empty", "", "foo.com", False),
    ("only second empty", "foo.com", "", False),
    ("same exact name", "foo.com", "foo.com", True),
    ("different exact names", "bar.com", "foo.com", False),
    ("different exact names, swapped", "foo.com", "bar.com", False),
    ("exact domain vs exact subdomain", "bar.foo.com", "foo.com", False),
    ("exact domain vs exact subdomain, swapped", "foo.com", "bar.foo.com", False),
    ("subdomain inside wildcard", "foo.com", "*.com", True),
    ("another subdomain inside wildcard", "bar.com", "*.com", True),
    ("subdomain inside deeper wildcard", "bar.foo.com", "*.foo.com", True),
    ("exact name inside star", "foo.com", "*", True),
    ("wildcard inside star", "*.com", "*", True),
    ("single label inside star", "com", "*", True),
    ("star inside star", "*", "*", True),
    ("empty name inside star", "", "*", True),
    ("narrow wildcard inside broad wildcard", "*.foo.com", "*.com", True),
    ("wildcard not inside its own apex", "*.foo.com", "foo.com", False),
    ("long wildcard not inside short exact name", "*.foo.bar.baz", "baz", False),
    ("long exact name inside short wildcard", "foo.bar.baz", "*.baz", True),
    # ours: the one-way cases that distinguish SubsetOf from Matches
    ("broad wildcard not inside narrow wildcard", "*.com", "*.foo.com", False),
    ("wildcard not inside an exact name", "*.com", "foo.com", False),
    ("star not inside a wildcard", "*", "*.com", False),
    ("star not inside an exact name", "*", "foo.com", False),
    ("case-sensitive, as in Istio", "A.foo.com", "*.foo.com", True),
    ("case-sensitive suffix", "a.FOO.com", "*.foo.com", False),
]

# (server hosts, VS hosts, expected). From Istio TestNamesIntersection, in its order. The first case
# really is "foo,com" (with a comma) upstream; it is kept as is.
INTERSECTION_CASES: list[tuple[list[str], list[str], list[str]]] = [
    (["foo,com"], ["bar.com"], []),
    (["foo.com", "bar.com"], ["bar.com"], ["bar.com"]),
    (["foo.com", "bar.com"], ["*.com"], ["foo.com", "bar.com"]),
    (["*.com"], ["foo.com", "bar.com"], ["foo.com", "bar.com"]),
    (["foo.com", "*.net"], ["*.com", "bar.net"], ["foo.com", "bar.net"]),
    (["foo.com", "*.net"], ["*.bar.net"], ["*.bar.net"]),
    (["foo.com", "bar.net"], ["*"], ["foo.com", "bar.net"]),
    (["foo.com"], [], []),
    ([], ["bar.com"], []),
    (["*", "foo.com"], ["foo.com"], ["foo.com"]),
    # ours: the doc comment examples, ordering and de-duplication
    (["foo.com"], ["bar.com"], []),
    (["*.foo.com"], ["a.foo.com", "b.bar.com"], ["a.foo.com"]),
    (["*.foo.com"], ["foo.com"], []),
    (["b.com", "a.com"], ["*"], ["b.com", "a.com"]),
    (["*.com", "*"], ["z.com", "a.com"], ["z.com", "a.com"]),
    (["*", "*.com"], ["*.com", "a.com"], ["*.com", "a.com"]),
    (["*.com", "a.com"], ["*"], ["*.com", "a.com"]),
    (["a.com", "a.com"], ["a.com", "*.com"], ["a.com"]),
    (["*"], ["*"], ["*"]),
]

# (server hosts, namespace, expected). From Istio TestNamesForNamespace, in its order.
NAMES_FOR_NAMESPACE_CASES: list[tuple[list[str], str, list[str]]] = [
    (["ns1/foo.com", "ns2/bar.com"], "ns1", ["foo.com"]),
    (["ns1/foo.com", "ns2/bar.com"], "ns3", []),
    (["ns1/foo.com", "*/bar.com"], "ns1", ["foo.com", "bar.com"]),
    (["ns1/foo.com", "*/bar.com"], "ns3", ["bar.com"]),
    (["foo.com", "ns2/bar.com"], "ns2", ["foo.com", "bar.com"]),
    (["foo.com", "ns2/bar.com"], "ns3", ["foo.com"]),
    # ours
    ([], "ns1", []),
    (["*/*"], "ns1", ["*"]),
    (["*"], "ns1", ["*"]),
    (["./foo.com"], "ns1", []),  # callers must resolve "./" first
    (["ns1/*.foo.com", "ns1/*.foo.com"], "ns1", ["*.foo.com", "*.foo.com"]),
    (["ns1/a/b"], "ns1", ["a"]),  # Go keeps only the part between the first two slashes
]

# (input, expected). From Istio TestNamesSortOrder, in its order.
SORT_CASES: list[tuple[list[str], list[str]]] = [
    (["b", "a"], ["a", "b"]),
    (["bb", "cc", "aa"], ["aa", "bb", "cc"]),
    (["b", "a", "aa"], ["aa", "a", "b"]),
    (["foo.com", "bar.com", "foo.bar.com"], ["foo.bar.com", "bar.com", "foo.com"]),
    (["a", "*", "z"], ["a", "z", "*"]),
    (["foo.com", "bar.com", "*.com"], ["bar.com", "foo.com", "*.com"]),
    (
        ["foo.com", "bar.com", "*.com", "*.foo.com", "*", "baz.bar.com"],
        ["baz.bar.com", "bar.com", "foo.com", "*.foo.com", "*.com", "*"],
    ),
    # ours
    ([], []),
    (["a.com", "a.com"], ["a.com", "a.com"]),
    (["*.com", "", "a.com"], ["a.com", "", "*.com"]),
    (["*.b.com", "*.a.com"], ["*.a.com", "*.b.com"]),
    (["B.com", "a.com"], ["B.com", "a.com"]),  # byte order: upper case before lower case
]

# (host, namespace, domain suffix, expected). From Istio TestResolveShortnameToFQDN; Istio's
# Domain "cluster.local" is our suffix "svc.cluster.local", and an empty Domain is "".
EXPAND_CASES: list[tuple[str, str, str, str]] = [
    ("*", "", "", "*"),
    ("*", "default", "svc.cluster.local", "*"),
    ("foo", "default", "svc.cluster.local", "foo.default.svc.cluster.local"),
    ("foo.bar", "default", "svc.cluster.local", "foo.bar"),
    ("foo", "", "svc.cluster.local", "foo.svc.cluster.local"),
    ("foo", "default", "", "foo.default"),
    ("42.185.131.210", "default", "", "42.185.131.210"),
    ("42.185.131.210", "cluster.local", "", "42.185.131.210"),
    ("2a00:4000::614", "default", "", "2a00:4000::614"),
    ("2a00:4000::614", "cluster.local", "", "2a00:4000::614"),
    # ours
    ("", "default", "svc.cluster.local", ""),
    ("reviews", "bookinfo", "svc.cluster.local", "reviews.bookinfo.svc.cluster.local"),
    ("reviews", "bookinfo", "svc.corp.internal", "reviews.bookinfo.svc.corp.internal"),
    ("*.foo.com", "default", "svc.cluster.local", "*.foo.com"),
    ("*foo", "default", "svc.cluster.local", "*foo.default.svc.cluster.local"),
    ("::1", "default", "svc.cluster.local", "::1"),
    ("fe80::1%eth0", "default", "svc.cluster.local", "fe80::1%eth0"),
    ("Reviews", "bookinfo", "svc.cluster.local", "Reviews.bookinfo.svc.cluster.local"),
    ("reviews.bookinfo", "other", "svc.cluster.local", "reviews.bookinfo"),
]

# (raw, own namespace, expected)
SPLIT_CASES: list[tuple[str, str, tuple[str, str]]] = [
    ("./foo.com", "gw-ns", ("gw-ns", "foo.com")),
    ("*/foo.com", "gw-ns", ("*", "foo.com")),
    ("foo.com", "gw-ns", ("*", "foo.com")),
    ("ns1/foo.com", "gw-ns", ("ns1", "foo.com")),
    ("*/*", "gw-ns", ("*", "*")),
    ("*", "gw-ns", ("*", "*")),
    ("./*.foo.com", "gw-ns", ("gw-ns", "*.foo.com")),
    ("gw-ns/foo.com", "gw-ns", ("gw-ns", "foo.com")),
    ("ns1/", "gw-ns", ("ns1", "")),
    ("ns1/a/b", "gw-ns", ("ns1", "a")),
    ("", "gw-ns", ("*", "")),
]

IS_WILDCARD_CASES: list[tuple[str, bool]] = [
    ("*", True),
    ("*.foo.com", True),
    ("*foo.com", True),
    ("*-bar.foo.com", True),
    ("foo.com", False),
    ("foo.*.com", False),
    ("", False),
]


@pytest.mark.parametrize(("desc", "a", "b", "expected"), MATCHES_CASES, ids=[c[0] for c in MATCHES_CASES])
def test_matches(desc: str, a: str, b: str, expected: bool) -> None:
    assert matches(a, b) is expected


@pytest.mark.parametrize(("desc", "a", "b", "expected"), MATCHES_CASES, ids=[c[0] for c in MATCHES_CASES])
def test_matches_is_symmetric(desc: str, a: str, b: str, expected: bool) -> None:
    assert matches(b, a) is expected


@pytest.mark.parametrize(("desc", "a", "b", "expected"), SUBSET_OF_CASES, ids=[c[0] for c in SUBSET_OF_CASES])
def test_subset_of(desc: str, a: str, b: str, expected: bool) -> None:
    assert subset_of(a, b) is expected


@pytest.mark.parametrize(("a", "b"), [(c[1], c[2]) for c in MATCHES_CASES + SUBSET_OF_CASES])
def test_matches_iff_subset_either_way(a: str, b: str) -> None:
    # Why intersection() never drops an overlapping pair.
    assert matches(a, b) == (subset_of(a, b) or subset_of(b, a))


@pytest.mark.parametrize(("server_hosts", "vs_hosts", "expected"), INTERSECTION_CASES)
def test_intersection(server_hosts: list[str], vs_hosts: list[str], expected: list[str]) -> None:
    assert intersection(server_hosts, vs_hosts) == expected


@given(st.lists(st.sampled_from(["*", "", "a.com", "*.com", "*.a.com", "b.a.com", "*a.com", "A.com"]), max_size=6))
def test_a_wildcard_server_meets_each_vs_host_once_as_the_pairwise_rule_says(vs_hosts: list[str]) -> None:
    # intersection() answers `*` without comparing pairs; the pairwise rule must agree.
    pairwise = ["*" if subset_of("*", v) else v for v in vs_hosts if subset_of("*", v) or subset_of(v, "*")]
    assert intersection(["*"], vs_hosts) == list(dict.fromkeys(pairwise))


def test_intersection_accepts_tuples_and_does_not_mutate() -> None:
    server = ["*.com"]
    assert intersection(tuple(server), ("a.com",)) == ["a.com"]
    assert server == ["*.com"]


@pytest.mark.parametrize(("server_hosts", "namespace", "expected"), NAMES_FOR_NAMESPACE_CASES)
def test_names_for_namespace(server_hosts: list[str], namespace: str, expected: list[str]) -> None:
    assert names_for_namespace(server_hosts, namespace) == expected


@pytest.mark.parametrize(("hosts", "expected"), SORT_CASES)
def test_most_specific_first(hosts: list[str], expected: list[str]) -> None:
    original = list(hosts)
    assert most_specific_first(hosts) == expected
    assert hosts == original


def test_most_specific_first_is_order_independent() -> None:
    hosts = ["foo.com", "bar.com", "*.com", "*.foo.com", "*", "baz.bar.com"]
    assert most_specific_first(reversed(hosts)) == most_specific_first(hosts)


@pytest.mark.parametrize(("host", "namespace", "suffix", "expected"), EXPAND_CASES)
def test_expand_short_name(host: str, namespace: str, suffix: str, expected: str) -> None:
    assert expand_short_name(host, namespace, suffix) == expected


def test_expand_short_name_default_suffix() -> None:
    assert expand_short_name("reviews", "bookinfo") == "reviews.bookinfo.svc.cluster.local"


@pytest.mark.parametrize(("raw", "own_namespace", "expected"), SPLIT_CASES)
def test_split_namespaced_host(raw: str, own_namespace: str, expected: tuple[str, str]) -> None:
    assert split_namespaced_host(raw, own_namespace) == expected


@pytest.mark.parametrize(("host", "expected"), IS_WILDCARD_CASES)
def test_is_wildcard(host: str, expected: bool) -> None:
    assert is_wildcard(host) is expected


def test_normalize_host_then_match() -> None:
    assert not matches("Foo.Example.com", "*.example.com")
    assert matches(normalize_host("Foo.Example.com"), normalize_host("*.EXAMPLE.com"))
