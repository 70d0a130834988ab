"""`covers`, the test behind unreachable rules and ineffective matches, against the rule spelled out plainly.

The reachability check compares every pair of a VirtualService's matches, so `covers` is written for speed
(conditions taken apart once per match); here it must agree with the straightforward reading of the rule.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.manifests.model import HTTPMatchRequest, StringMatch
from reconciler.validation.match_analysis import covers, is_catch_all

UNIVERSAL_REGEXES = {".*", "^.*$", "/.*"}


def plain_covers(earlier: HTTPMatchRequest, later: HTTPMatchRequest) -> bool:
    a, b = earlier.uri, later.uri
    if not (a is None or is_empty(a) or a.prefix in ("", "/") or a.regex in UNIVERSAL_REGEXES):
        if b is None or is_empty(b) or (later.ignore_uri_case and not earlier.ignore_uri_case):
            return False
        if not string_covers(a, b, earlier.ignore_uri_case):
            return False
    for name in ("scheme", "method", "authority"):
        if not string_covers(getattr(earlier, name), getattr(later, name)):
            return False
    for name in ("headers", "query_params"):
        wanted, given = getattr(earlier, name), getattr(later, name)
        if any(key not in given or not string_covers(value, given[key]) for key, value in wanted.items()):
            return False
    return (
        all(later.without_headers.get(k) == v for k, v in earlier.without_headers.items())
        and (not earlier.port or earlier.port == later.port)
        and (not earlier.gateways or bool(later.gateways and set(later.gateways) <= set(earlier.gateways)))
        and (not earlier.source_namespace or earlier.source_namespace == later.source_namespace)
        and all(later.source_labels.get(k) == v for k, v in earlier.source_labels.items())
    )


def string_covers(a: StringMatch | None, b: StringMatch | None, fold: bool = False) -> bool:
    if a is None:
        return True
    if is_empty(a):
        return b is not None
    if b is None or is_empty(b):
        return False

    def norm(value: str) -> str:
        return value.lower() if fold else value

    if a.exact is not None:
        return b.exact is not None and norm(b.exact) == norm(a.exact)
    if a.prefix is not None:
        target = b.exact if b.exact is not None else b.prefix
        return target is not None and norm(target).startswith(norm(a.prefix))
    return a.regex == b.regex


def is_empty(match: StringMatch) -> bool:
    return match.exact is None and match.prefix is None and match.regex is None


TEXT = st.sampled_from(["", "/", "/a", "/A", "/a/b", ".*", "/.*", "^.*$", "x", "X", "\x00"])
STRING_MATCH = st.builds(
    StringMatch, exact=st.none() | TEXT, prefix=st.none() | TEXT, regex=st.none() | TEXT
) | st.just(StringMatch())
OPTIONAL_MATCH = st.none() | STRING_MATCH
MATCH = st.builds(
    HTTPMatchRequest,
    uri=OPTIONAL_MATCH,
    scheme=OPTIONAL_MATCH,
    method=OPTIONAL_MATCH,
    authority=OPTIONAL_MATCH,
    headers=st.dictionaries(st.sampled_from(["a", "b"]), STRING_MATCH, max_size=2),
    query_params=st.dictionaries(st.just("q"), STRING_MATCH, max_size=1),
    without_headers=st.dictionaries(st.just("w"), STRING_MATCH, max_size=1),
    port=st.sampled_from([0, 80, 81]),
    gateways=st.lists(st.sampled_from(["g1", "g2"]), max_size=2),
    ignore_uri_case=st.booleans(),
    source_namespace=st.sampled_from(["", "ns"]),
)


FIELDS = [f.name for f in dataclasses.fields(HTTPMatchRequest)]
# Two matches that differ in a few fields: random pairs would hardly ever cover one another.
PAIR = st.tuples(MATCH, MATCH, st.sets(st.sampled_from(FIELDS))).map(
    lambda t: (t[0], dataclasses.replace(t[0], **{name: getattr(t[1], name) for name in t[2]}))
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(PAIR, PAIR.map(lambda pair: pair[::-1]), st.tuples(MATCH, MATCH)))
def test_covers_reads_the_rule_as_written(pair: tuple[HTTPMatchRequest, HTTPMatchRequest]) -> None:
    earlier, later = pair
    assert covers(earlier, later) == plain_covers(earlier, later)
    assert covers(earlier, earlier)
    assert is_catch_all(earlier) == plain_covers(earlier, ANYTHING_STRICT)


URIS = [None, StringMatch(), StringMatch(regex=".*"), StringMatch(regex="/a.*"), StringMatch(prefix="/")] + [
    StringMatch(**{which: text}) for which in ("exact", "prefix") for text in ("/a", "/A", "/a/b", "/ab")
]


def test_covers_reads_paths_as_written() -> None:
    """Every pair of these path conditions, with and without ignoreUriCase on either side."""
    matches = [HTTPMatchRequest(uri=uri, ignore_uri_case=fold) for uri in URIS for fold in (False, True)]
    for earlier in matches:
        for later in matches:
            assert covers(earlier, later) == plain_covers(earlier, later), (earlier, later)


ANYTHING_STRICT = HTTPMatchRequest(
    uri=StringMatch(exact="\x00catch-all probe"),
    scheme=StringMatch(exact="\x00"),
    method=StringMatch(exact="\x00"),
    authority=StringMatch(exact="\x00"),
)
