"""Delegate VirtualServices: a root VS's `http[].delegate` pulls in the `http` rules of a hosts-less VS,
merged under the root rule's match (istiod's mergeVirtualServicesIfNeeded / mergeHTTPRoutes in
pilot/pkg/model, one level only).

Where istiod drops a delegation with a debug log (a delegate not exported to the root's namespace, a delegate
rule whose match does not fit inside the root's), we report a finding; `reconciler.validation` reports a
missing delegate and delegates with hosts, gateways or nested delegation.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence

from reconciler.config.model import ResolvedVirtualService
from reconciler.diagnostics import Finding, Severity
from reconciler.manifests.model import Delegate, HTTPMatchRequest, HTTPRoute, StringMatch


def is_delegate(vs: ResolvedVirtualService) -> bool:
    return not vs.spec.hosts


def has_delegate_rules(vs: ResolvedVirtualService) -> bool:
    # A Delegate is always truthy (no __bool__ or __len__), so `any` over the rules' delegates says if one is set.
    return any(map(_DELEGATE, vs.spec.http))


_DELEGATE = operator.attrgetter("delegate")


def merge_delegates(
    virtual_services: Sequence[ResolvedVirtualService],
) -> tuple[list[ResolvedVirtualService], list[Finding]]:
    """The VSs that route traffic (roots merged, delegates left out) and the findings about delegation."""
    findings: list[Finding] = []
    delegates = {vs.ref: vs for vs in virtual_services if is_delegate(vs)}
    routable: list[ResolvedVirtualService] = []
    for vs in virtual_services:
        if is_delegate(vs):
            continue
        if has_delegate_rules(vs):
            routable.append(_merge_root(vs, delegates, findings))
        else:
            routable.append(vs)
    return routable, findings


def _merge_root(
    root: ResolvedVirtualService,
    delegates: dict[str, ResolvedVirtualService],
    findings: list[Finding],
) -> ResolvedVirtualService:
    rules: list[HTTPRoute] = []
    for index, rule in enumerate(root.spec.http):
        if rule.delegate is None:
            rules.append(rule)
            continue
        delegate = _find_delegate(root, index, rule.delegate, delegates, findings)
        if delegate is None:
            continue
        for sub_index, sub_rule in enumerate(delegate.spec.http):
            merged = _merge_rule(rule, root.namespace, sub_rule, delegate.namespace)
            if merged is None:
                findings.append(_conflict(root, index, delegate, sub_index))
                continue
            rules.append(merged)
    # Only servers see the merged rules: config.virtual_services keeps the documents as written, for findings.
    return dataclasses.replace(root, spec=dataclasses.replace(root.spec, http=rules))


def _find_delegate(
    root: ResolvedVirtualService,
    index: int,
    reference: Delegate,
    delegates: dict[str, ResolvedVirtualService],
    findings: list[Finding],
) -> ResolvedVirtualService | None:
    ref = f"{reference.namespace or root.namespace}/{reference.name}"
    delegate = delegates.get(ref)
    if delegate is None:  # validation reports `delegate-not-found`; the rule routes nothing, as in istiod
        return None
    if not _exported_to(delegate, root.namespace):
        findings.append(
            Finding(
                Severity.ERROR,
                "delegate-not-exported",
                f"delegate VirtualService {ref} is not exported to namespace {root.namespace!r} "
                f"(exportTo: {delegate.spec.export_to}); istiod would silently route nothing for this rule",
                root.resource.locate("spec", "http", index, "delegate"),
                root.resource.ref,
            )
        )
        return None
    return delegate


def _exported_to(delegate: ResolvedVirtualService, namespace: str) -> bool:
    export_to = delegate.spec.export_to or ["*"]
    visible = {delegate.namespace if e == "." else e for e in export_to}
    return "*" in visible or namespace in visible


def _conflict(root: ResolvedVirtualService, index: int, delegate: ResolvedVirtualService, sub_index: int) -> Finding:
    return Finding(
        Severity.WARNING,
        "delegate-route-conflict",
        f"this rule's match does not fit inside the match of {root.ref}'s rule {index} that delegates here "
        "(a delegate can only narrow it: same or longer prefix, same exact, no regex on either side), so "
        "the rule is dropped, as istiod drops it",
        delegate.resource.locate("spec", "http", sub_index, "match"),
        delegate.resource.ref,
        (root.resource.locate("spec", "http", index, "match"),),
    )


# ---------------------------------------------------------------------------------------------- merging

# Fields a delegate rule inherits from the root rule when it leaves them unset (istiod's mergeHTTPRoute).
_INHERITED = (
    "rewrite",
    "direct_response",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percent",
    "mirror_percentage",
    "cors_policy",
    "mirrors",
    "headers",
)


def _merge_rule(root: HTTPRoute, root_ns: str, sub: HTTPRoute, sub_ns: str) -> HTTPRoute | None:
    matches = _merge_matches(
        [_qualify_gateways(m, root_ns) for m in root.match], [_qualify_gateways(m, sub_ns) for m in sub.match]
    )
    if matches is None:
        return None
    inherited = {name: getattr(root, name) for name in _INHERITED if getattr(sub, name) in (None, [])}
    return dataclasses.replace(sub, match=matches, name=_join_names(root.name, sub.name), **inherited)


def _qualify_gateways(match: HTTPMatchRequest, namespace: str) -> HTTPMatchRequest:
    """Each VS's match gateways are resolved in that VS's namespace, before they are merged (istiod)."""
    from reconciler.config.resolve import resolve_gateway_name  # resolve imports this module

    return dataclasses.replace(match, gateways=[resolve_gateway_name(g, namespace) for g in match.gateways])


def _join_names(root: str, sub: str) -> str:
    if not sub:
        return root
    return f"{root}-{sub}" if root else sub


def _merge_matches(root: list[HTTPMatchRequest], sub: list[HTTPMatchRequest]) -> list[HTTPMatchRequest] | None:
    """Each delegate match combined with every root match it fits in; None when one fits in none."""
    if not root:
        return sub
    if not sub:
        return root
    out = []
    for leaf in sub:
        fitting = [_merge_match(parent, leaf) for parent in root if not _conflicts(parent, leaf)]
        if not fitting:
            return None
        out.extend(fitting)
    return out


def _merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    return dataclasses.replace(
        leaf,
        name=_join_names(root.name, leaf.name),
        uri=leaf.uri or root.uri,
        scheme=leaf.scheme or root.scheme,
        method=leaf.method or root.method,
        authority=leaf.authority or root.authority,
        headers={**root.headers, **leaf.headers},
        without_headers={**root.without_headers, **leaf.without_headers},
        query_params={**root.query_params, **leaf.query_params},
        port=leaf.port or root.port,
        source_labels={**root.source_labels, **leaf.source_labels},
        source_namespace=leaf.source_namespace or root.source_namespace,
        gateways=leaf.gateways or root.gateways,
        stat_prefix=leaf.stat_prefix or root.stat_prefix,
    )


def _conflicts(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    """istiod's hasConflict: can `leaf` narrow `root`?"""
    pairs = [(getattr(root, f), getattr(leaf, f)) for f in ("uri", "scheme", "method", "authority")]
    pairs += [(root.headers.get(k), v) for k, v in leaf.headers.items()]
    pairs += [(root.without_headers.get(k), v) for k, v in leaf.without_headers.items()]
    pairs += [(root.query_params.get(k), v) for k, v in leaf.query_params.items()]
    if any(_string_conflict(r, v) for r, v in pairs):
        return True
    if root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    if any(k in root.source_labels and root.source_labels[k] != v for k, v in leaf.source_labels.items()):
        return True
    return bool(root.gateways and leaf.gateways and not set(leaf.gateways) <= set(root.gateways))


def _string_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    """istiod's stringMatchConflict (an empty string counts as unset, as Go's getters read it)."""
    if root is None or leaf is None:
        return False
    if root.regex and (leaf.regex or leaf.prefix or leaf.exact):
        return True
    if leaf.regex and (root.regex or root.prefix or root.exact):
        return True
    if root.exact:
        return bool(leaf.prefix) or (leaf.exact or "") != root.exact
    if root.prefix:
        narrower = leaf.prefix or leaf.exact
        return not (narrower and narrower.startswith(root.prefix))
    return True
