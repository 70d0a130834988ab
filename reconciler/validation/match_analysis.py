"""Rules and matches that can never apply (istioctl's IST0130 UnreachableRule and IST0131 IneffectiveMatch).

Istio reports a match identical to an earlier one, any rule after a rule without matches, and (for HTTP) an
earlier URI prefix that covers a later one under a heuristic that also assumes a missing method means GET.
We report the same cases with a sound test instead: a match is ineffective when an earlier match accepts
every request it accepts (same or weaker conditions on path, headers, query, method, authority, scheme,
port, gateways), so e.g. `prefix: /` before anything, or `prefix: /api` before `exact: /api/v1`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from reconciler.manifests.model import HTTPMatchRequest, HTTPRoute, StringMatch
from reconciler.validation.common import ResourceReport

# A regex that matches every path (istiod treats these as catch-all too).
_UNIVERSAL_REGEXES = frozenset({".*", "^.*$", "/.*"})


def check_http_reachability(report: ResourceReport, rules: Sequence[HTTPRoute]) -> None:
    seen: list[tuple[int, int, HTTPMatchRequest]] = []  # (rule, match, the match) in order
    catch_all: int | None = None
    for i, rule in enumerate(rules):
        path = ("spec", "http", i)
        if catch_all is not None:
            reason = "a rule without matches" if not rules[catch_all].match else "a catch-all match"
            report.warning(
                path,
                "unreachable-rule",
                f"rule {_rule_name(rule, i)} is never used: {_rule_name(rules[catch_all], catch_all)} before it "
                f"has {reason} and takes every request",
                [report.resource.locate("spec", "http", catch_all)],
            )
            continue
        matches = rule.match or [HTTPMatchRequest()]
        covered_count = 0
        for j, match in enumerate(matches):
            earlier = next(((r, m) for r, m, prior in seen if covers(prior, match)), None)
            if earlier is not None:
                covered_count += 1
                if rule.match:
                    report.warning(
                        (*path, "match", j),
                        "ineffective-match",
                        f"match {_match_name(match, j)} of rule {_rule_name(rule, i)} is never used: match "
                        f"#{earlier[1]} of rule {_rule_name(rules[earlier[0]], earlier[0])} already takes all its "
                        "requests",
                        [report.resource.locate("spec", "http", earlier[0], "match", earlier[1])],
                    )
            else:
                seen.append((i, j, match))
            if is_catch_all(match) and catch_all is None:
                catch_all = i
        if rule.match and covered_count == len(matches):
            report.warning(
                path,
                "unreachable-rule",
                f"rule {_rule_name(rule, i)} is never used: earlier rules take all its matches",
            )


def check_l4_reachability(report: ResourceReport, rules: Sequence[Any], section: str) -> None:
    """TCP and TLS rules: a rule after a match-less rule, or whose every match repeats an earlier one."""
    seen: dict[str, int] = {}
    matchless: int | None = None
    for i, rule in enumerate(rules):
        path = ("spec", section, i)
        if matchless is not None:
            report.warning(
                path,
                "unreachable-rule",
                f"{section} rule #{i} is never used: rule #{matchless} before it has no matches and takes everything",
            )
            continue
        if not rule.match:
            matchless = i
            continue
        repeated = 0
        for j, match in enumerate(rule.match):
            key = _canonical(match)
            if key in seen:
                repeated += 1
                report.warning(
                    (*path, "match", j),
                    "ineffective-match",
                    f"match #{j} of {section} rule #{i} repeats a match of rule #{seen[key]}",
                )
            else:
                seen[key] = i
        if repeated == len(rule.match):
            report.warning(
                path, "unreachable-rule", f"{section} rule #{i} is never used: earlier rules take its matches"
            )


def is_catch_all(match: HTTPMatchRequest) -> bool:
    return covers(match, _ANYTHING_STRICT)


def covers(earlier: HTTPMatchRequest, later: HTTPMatchRequest) -> bool:
    """True if every request `later` accepts is also accepted by `earlier` (so `later` never gets any)."""
    if not _uri_covers(earlier, later):
        return False
    for field_name in ("scheme", "method", "authority"):
        if not _string_covers(getattr(earlier, field_name), getattr(later, field_name)):
            return False
    for field_name in ("headers", "query_params"):
        wanted: dict[str, StringMatch] = getattr(earlier, field_name)
        given: dict[str, StringMatch] = getattr(later, field_name)
        if any(name not in given or not _string_covers(value, given[name]) for name, value in wanted.items()):
            return False
    if any(later.without_headers.get(name) != value for name, value in earlier.without_headers.items()):
        return False
    if earlier.port and earlier.port != later.port:
        return False
    if earlier.gateways and not (later.gateways and set(later.gateways) <= set(earlier.gateways)):
        return False
    if earlier.source_namespace and earlier.source_namespace != later.source_namespace:
        return False
    return all(later.source_labels.get(k) == v for k, v in earlier.source_labels.items())


# A match with a condition on everything: only a match that needs nothing covers it.
_ANYTHING_STRICT = HTTPMatchRequest(
    uri=StringMatch(exact="\x00catch-all probe"),
    scheme=StringMatch(exact="\x00"),
    method=StringMatch(exact="\x00"),
    authority=StringMatch(exact="\x00"),
)


def _uri_covers(earlier: HTTPMatchRequest, later: HTTPMatchRequest) -> bool:
    a, b = earlier.uri, later.uri
    if a is None or _is_empty(a) or (a.prefix is not None and a.prefix in ("", "/")) or a.regex in _UNIVERSAL_REGEXES:
        return True
    if b is None or _is_empty(b):
        return False
    fold = earlier.ignore_uri_case
    if later.ignore_uri_case and not fold:
        return False
    return _string_covers(a, b, fold)


def _string_covers(a: StringMatch | None, b: StringMatch | None, fold: bool = False) -> bool:
    if a is None:
        return True
    if _is_empty(a):  # a presence test: any value will do
        return b is not None
    if b is None or _is_empty(b):
        return False

    def norm(value: str) -> str:
        return value.lower() if fold else value

    if a.exact is not None:
        return b.exact is not None and norm(b.exact) == norm(a.exact)
    if a.prefix is not None:
        target = b.exact if b.exact is not None else b.prefix
        return target is not None and norm(target).startswith(norm(a.prefix))
    return a.regex is not None and a.regex == b.regex


def _is_empty(match: StringMatch) -> bool:
    return match.exact is None and match.prefix is None and match.regex is None


def _canonical(match: Any) -> str:
    data = dataclasses.asdict(match)
    data.pop("name", None)
    return json.dumps(data, sort_keys=True, default=str)


def _rule_name(rule: HTTPRoute, index: int) -> str:
    return f"#{index} ({rule.name!r})" if rule.name else f"#{index}"


def _match_name(match: HTTPMatchRequest, index: int) -> str:
    return f"#{index} ({match.name!r})" if match.name else f"#{index}"
