"""Istio host-name semantics: wildcard matching, gateway/VirtualService host intersection, short names.

This is a port of the behaviour of istio/istio `pkg/config/host` (`Name.Matches`, `Name.SubsetOf`,
`Names.Intersection`, `NamesForNamespace`, the `Names` sort order) and of `ResolveShortnameToFQDN`.
Which VirtualService binds to which gateway server, and which virtual hosts we emit, must agree with
istiod, so these functions keep Istio's exact rules, including the odd ones:

* A wildcard is any name whose first character is `*`. The rest of the name is compared as a plain
  string suffix, not label by label. `*.com` covers `foo.com` but `*.foo.com` does not cover
  `foo.com`, and `*` covers everything, the empty name included.
* Comparison is case-sensitive, exactly as in Istio: these helpers never change case. DNS names and
  Envoy's virtual-host matching are case-insensitive, however: Envoy lower-cases `domains` and rejects
  a route configuration in which two domains differ only by case (istio/istio#49638). Callers should
  therefore pass every host through `normalize_host` once, when manifests are loaded, and never
  compare raw manifest strings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = [
    "ANY_NAMESPACE",
    "DEFAULT_DOMAIN_SUFFIX",
    "WILDCARD",
    "expand_short_name",
    "intersection",
    "is_ip_address",
    "is_wildcard",
    "matches",
    "most_specific_first",
    "names_for_namespace",
    "normalize_host",
    "split_namespaced_host",
    "subset_of",
]

WILDCARD = "*"
"""The host that matches every name."""

ANY_NAMESPACE = "*"
"""Namespace part meaning "visible to every namespace" (`*/host`, or a host with no prefix)."""

DEFAULT_DOMAIN_SUFFIX = "svc.cluster.local"
"""What istiod appends after the namespace with its default `cluster.local` domain (`.svc.` + domain)."""


def normalize_host(host: str) -> str:
    """Lower-case a host name, as DNS and Envoy's virtual-host matching treat it.

    Istio itself keeps manifest hosts as written, so `Foo.com` and `foo.com` are different names to
    istiod but the same domain to Envoy. That mismatch is how two VirtualServices can make istiod
    emit a duplicate domain that Envoy NACKs. Normalising on load avoids the whole class of bug.
    """
    return host.lower()


def is_wildcard(host: str) -> bool:
    """True if `host` is wildcarded, i.e. starts with `*` (Istio's `Name.IsWildCarded`).

    Only the first character counts: `*.foo.com`, `*` and even `*foo.com` are wildcards, while
    `foo.*.com` is not.
    """
    return host.startswith(WILDCARD)


def matches(a: str, b: str) -> bool:
    """True if the two names overlap, in either direction (Istio's `Name.Matches`).

    * Two exact names match only if they are equal.
    * An exact name matches a wildcard if it ends with the wildcard minus its leading `*`.
    * Two wildcards match if the longer one, minus its `*`, ends with the shorter one minus its `*`.

    So `*.com` matches `foo.com` and `*.foo.com`, `*` matches everything, and `*.foo.com` does
    not match `foo.com`.
    """
    a_wild, b_wild = is_wildcard(a), is_wildcard(b)
    if a_wild and b_wild:
        # The longer wildcard is the narrower one; it overlaps the shorter if it ends with it.
        longer, shorter = (b, a) if len(a) < len(b) else (a, b)
        return longer[1:].endswith(shorter[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def subset_of(a: str, b: str) -> bool:
    """True if every name `a` covers is also covered by `b` (Istio's `Name.SubsetOf`).

    Like `matches`, but one-way: `foo.com` is a subset of `*.com`, not the reverse. A wildcard is
    never a subset of an exact name, not even of the same spelling without the `*`.
    """
    a_wild, b_wild = is_wildcard(a), is_wildcard(b)
    if a_wild:
        # A shorter wildcard is broader, so it cannot be inside a longer one.
        return b_wild and len(a) >= len(b) and a[1:].endswith(b[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def intersection(server_hosts: Sequence[str], vs_hosts: Sequence[str]) -> list[str]:
    """The names covered by both lists, each overlap given as its narrower side (`Names.Intersection`).

    For every pair (server host, VS host): if the server host is a subset of the VS host, the server
    host is kept; otherwise, if the VS host is a subset of the server host, the VS host is kept;
    otherwise the pair contributes nothing. One name is a subset of the other exactly when the two
    `matches`, so every overlapping pair contributes its narrower name.

    Order: outer loop over `server_hosts`, inner loop over `vs_hosts`, each name kept at its first
    appearance (later duplicates are dropped). That is Istio's loop order; it says nothing about the
    order of emitted virtual hosts, so callers wanting a canonical order should use `most_specific_first`.

    Example: `intersection(["*.foo.com"], ["a.foo.com", "b.bar.com"]) == ["a.foo.com"]`.
    """
    if len(server_hosts) == 1 and server_hosts[0] == WILDCARD:
        # The commonest server host: every VS host is a subset of `*` (and `*` itself of nothing narrower).
        return list(dict.fromkeys(vs_hosts))
    result: list[str] = []
    seen: set[str] = set()
    for server_host in server_hosts:
        for vs_host in vs_hosts:
            if subset_of(server_host, vs_host):
                kept = server_host
            elif subset_of(vs_host, server_host):
                kept = vs_host
            else:
                continue
            if kept not in seen:
                seen.add(kept)
                result.append(kept)
    return result


def split_namespaced_host(raw: str, own_namespace: str) -> tuple[str, str]:
    """Split a gateway (or Sidecar) host entry into `(namespace, host)`.

    * `ns/host` -> `(ns, host)`: only VirtualServices in `ns` may bind to it.
    * `./host` -> `(own_namespace, host)`: `.` is the namespace of the resource that holds the entry.
    * `*/host` -> `("*", host)` and bare `host` -> `("*", host)`: any namespace.

    Like Istio (`strings.Split(h, "/")`, then parts 0 and 1), anything after a second `/` is dropped:
    `a/b/c` gives `("a", "b")`. Istio's validation rejects such entries, and so should ours.
    """
    if "/" not in raw:
        return ANY_NAMESPACE, raw
    parts = raw.split("/")
    namespace, host = parts[0], parts[1]
    if namespace == ".":
        namespace = own_namespace
    return namespace, host


def names_for_namespace(server_hosts: Sequence[str], namespace: str) -> list[str]:
    """The host parts of the server hosts that a VirtualService in `namespace` may bind to.

    Port of Istio's `NamesForNamespace`. Bare hosts and `*/host` are visible to every namespace;
    `ns/host` only to `ns`. Order and duplicates are kept as given.

    The caller must have resolved `./host` to `<gateway namespace>/host` first (istiod does this in
    `sanitizeServerHostNamespace`); an unresolved `./host` is only visible to a namespace named `.`,
    which cannot exist, so it is silently dropped. As in `split_namespaced_host`, anything after a
    second `/` is ignored.
    """
    result: list[str] = []
    for raw in server_hosts:
        host = raw
        if "/" in raw:
            parts = raw.split("/")
            if parts[0] not in (namespace, ANY_NAMESPACE):
                continue
            host = parts[1]
        result.append(host)
    return result


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address (not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def expand_short_name(host: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    """Qualify a short service name with its namespace and cluster domain (`ResolveShortnameToFQDN`).

    A name with no `.` that is neither `*`, empty, nor an IP address (e.g. IPv6 `2001:db8::1`)
    becomes `<host>.<namespace>.<domain_suffix>`, so VS host `reviews` in namespace `bookinfo` is
    `reviews.bookinfo.svc.cluster.local`. Everything else is returned unchanged, so `*.foo.com`
    stays as written. Istio assumes every wildcard except `*` contains a dot, but its validation
    accepts the dot-less `*foo`, and that one *is* expanded (`*foo.ns.svc.cluster.local`); we match.

    `domain_suffix` already includes the `svc.` label (istiod's `Domain` is `cluster.local` and it
    inserts `.svc.` itself). An empty `namespace` or `domain_suffix` leaves that part out, as istiod
    does for an empty namespace or domain. Case is preserved; see `normalize_host`.
    """
    if not host or host == WILDCARD or "." in host or is_ip_address(host):
        return host
    out = host
    if namespace:
        out = f"{out}.{namespace}"
    if domain_suffix:
        out = f"{out}.{domain_suffix}"
    return out


def _specificity_key(host: str) -> tuple[bool, int, bytes]:
    # Go compares lengths and strings byte-wise (UTF-8); encode so non-ASCII names sort identically.
    raw = host.encode()
    return is_wildcard(host), -len(raw), raw


def most_specific_first(hosts: Iterable[str]) -> list[str]:
    """Sort hosts the way Istio sorts `host.Names`: exact names first, then wildcards.

    Within each group, longer names come first and names of equal length are in byte-wise
    alphabetical order, e.g. `["baz.bar.com", "bar.com", "foo.com", "*.foo.com", "*.com", "*"]`.
    Longer names are more specific, so within a group this puts the most specific names first.
    The key is a total order, so the result is deterministic. Duplicates are kept.

    Go's `Names.Less` panics when exactly one side is empty; here the empty name counts as the
    shortest exact name (after all other exact names, before every wildcard).
    """
    return sorted(hosts, key=_specificity_key)
