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
    # (rule, match, the match, its path condition) in order: each later match is compared with all of them.
    seen: list[tuple[int, int, HTTPMatchRequest, Condition | None]] = []
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
        matches = rule.match or _MATCH_EVERYTHING
        covered_count = 0
        for j, match in enumerate(matches):
            match_path = _path_condition(match)
            earlier = None
            for r, m, prior, prior_path in seen:
                if _path_meets(prior_path, match) and _covers_beyond_path(prior, match):
                    earlier = (r, m)
                    break
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
                seen.append((i, j, match, match_path))
            if catch_all is None and _is_catch_all(match, match_path):
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
    return _is_catch_all(match, _path_condition(match))


def _is_catch_all(match: HTTPMatchRequest, path_condition: Condition | None) -> bool:
    """`is_catch_all`, given the match's path condition (see `_path_condition`)."""
    return _path_meets(path_condition, _ANYTHING_STRICT) and _covers_beyond_path(match, _ANYTHING_STRICT)


def covers(earlier: HTTPMatchRequest, later: HTTPMatchRequest) -> bool:
    """True if every request `later` accepts is also accepted by `earlier` (so `later` never gets any)."""
    return _path_meets(_path_condition(earlier), later) and _covers_beyond_path(earlier, later)


def _covers_beyond_path(earlier: HTTPMatchRequest, later: HTTPMatchRequest) -> bool:
    """`covers`, but for the path (which tells most pairs apart, so it is compared first)."""
    if not (
        _string_covers(earlier.scheme, later.scheme)
        and _string_covers(earlier.method, later.method)
        and _string_covers(earlier.authority, later.authority)
    ):
        return False
    for wanted, given in ((earlier.headers, later.headers), (earlier.query_params, later.query_params)):
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


# What a rule without matches has: a match that needs nothing.
_MATCH_EVERYTHING = (HTTPMatchRequest(),)
# A match with a condition on everything: only a match that needs nothing covers it.
_ANYTHING_STRICT = HTTPMatchRequest(
    uri=StringMatch(exact="\x00catch-all probe"),
    scheme=StringMatch(exact="\x00"),
    method=StringMatch(exact="\x00"),
    authority=StringMatch(exact="\x00"),
)

# A condition on one string (the path, a header, ...), taken apart: (which, text, fold). `which` is "exact",
# "prefix" or "regex", or "" for a presence test; with `fold`, `text` is lower case already. The reachability
# check compares every pair of a VirtualService's matches, so each match's path condition is taken apart once.
Condition = tuple[str, str, bool]


def _condition(match: StringMatch, fold: bool) -> Condition:
    if match.exact is not None:
        return "exact", match.exact.lower() if fold else match.exact, fold
    if match.prefix is not None:
        return "prefix", match.prefix.lower() if fold else match.prefix, fold
    if match.regex is not None:
        return "regex", match.regex, fold
    return "", "", fold


def _meets(condition: Condition, b: StringMatch | None) -> bool:
    """Whether every value `b` accepts meets `condition` (`b` None: any value, present or not)."""
    which, text, fold = condition
    if b is None:
        return False
    if not which:  # a presence test: any value will do
        return True
    # An empty `b` (a presence test) fails each test below: it has no exact, prefix or regex to compare.
    if which == "exact":
        return b.exact is not None and (b.exact.lower() if fold else b.exact) == text
    if which == "prefix":
        target = b.exact if b.exact is not None else b.prefix
        return target is not None and (target.lower() if fold else target).startswith(text)
    return text == b.regex


def _string_covers(a: StringMatch | None, b: StringMatch | None) -> bool:
    return a is None or _meets(_condition(a, False), b)


def _path_condition(match: HTTPMatchRequest) -> Condition | None:
    """The condition `match` puts on the path; None when every path meets it (none, a presence test, a `/` or
    empty prefix, a universal regex)."""
    uri = match.uri
    if uri is None or uri.prefix in ("", "/") or uri.regex in _UNIVERSAL_REGEXES:
        return None
    condition = _condition(uri, match.ignore_uri_case)
    return condition if condition[0] else None


def _path_meets(condition: Condition | None, later: HTTPMatchRequest) -> bool:
    """Whether every path `later` accepts meets `condition`: a case-insensitive match is covered only by another."""
    return condition is None or ((condition[2] or not later.ignore_uri_case) and _meets(condition, later.uri))


def _canonical(match: Any) -> str:
    data = dataclasses.asdict(match)
    data.pop("name", None)
    return json.dumps(data, sort_keys=True, default=str)


def _rule_name(rule: HTTPRoute, index: int) -> str:
    return f"#{index} ({rule.name!r})" if rule.name else f"#{index}"


def _match_name(match: HTTPMatchRequest, index: int) -> str:
    return f"#{index} ({match.name!r})" if match.name else f"#{index}"
