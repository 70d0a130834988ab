"""The line reader for block-style YAML (`manifests.blockstyle`) against libyaml (`manifests.yamldoc`).

Wherever the fast reader answers, its answer must be exactly what yamldoc builds, document by document, with
the same first line and column; anything it is unsure of it must leave to yamldoc (answer None), and it must never
accept a text that yamldoc refuses.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.manifests.blockstyle import load_plain_documents
from reconciler.manifests.yamldoc import YamlError, load_documents


def libyaml(text: str) -> list[tuple[Any, int, int]] | None:
    """What yamldoc reads, in load_plain_documents' shape; None when it refuses the text."""
    try:
        return [(doc.data, *doc.position(())) for doc in load_documents(text)]
    except YamlError:
        return None


def assert_agrees(text: str) -> list[tuple[Any, int, int]] | None:
    fast = load_plain_documents(text)
    if fast is not None:
        slow = libyaml(text)
        assert slow is not None, f"the fast reader accepted YAML that libyaml refuses:\n{text}"
        assert _same(fast, slow), f"different data for:\n{text}\nfast: {fast}\nslow: {slow}"
    return fast


def _same(a: Any, b: Any) -> bool:
    """Equality that also holds for NaN (`.nan` reads as a float NaN on both sides)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


READ = {
    "mapping and sequences": """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: vs
        spec:
          hosts:
          - a.example.com
          http:
          - name: r0
            match:
            - uri:
                prefix: /probe/
            route:
            - destination:
                host: a.internal
                subset: v1
              weight: 90
        """,
    "sequence indented under its key": """
        a:
          - x
          -   y
        b:
            c: 1
        """,
    "comments, blank lines and document markers": """
        # leading comment
        ---
        a: 1 # trailing comment
          # an indented comment
        b: 'it''s' # quoted
        c: "double"

        --- # marker with a comment
        d: a#b
        ...
        ---
        e:
        """,
    "typed scalars (YAML 1.1)": """
        int: 80
        octal: 017
        hex: 0x1F
        sexagesimal: 1:20
        float: 1.5
        inf: .inf
        yes: yes
        off: Off
        tilde: ~
        empty:
        quoted: '80'
        version: v1
        colon: a:b
        url: http://x/y?z=1
        regex: /items/[0-9]+(/details)?
        spaces: a  b
        """,
    "typed keys become strings": """
        1: one
        true: yes
        null: none
        1.5: f
        """,
    "nested sequences and null items": """
        a:
        - - x
          - y
        -
        - - - z
        b:
        -
          c: 1
        """,
    "root indented": """
          a: 1
          b:
            c: 2
        """,
    "one-line flow collections": """
        metadata: {name: gw, labels: {app: "x y", tier: 'it''s'}}
        spec:
          hosts: ["*", a.example.com]  # a comment
          empty: []
          none: {}
          http:
          - {route: [{destination: {host: a.internal}, weight: 80}, {destination: {host: b}}]}
          - [1, -2, 1.5, yes, ~, a b]
        """,
}

LEFT_TO_LIBYAML = {
    "multi-line flow collection": "a: [1,\n  2]\n",
    "flow pair in a sequence": "a: [b: 1]\n",
    "flow key without value": "a: {b}\n",
    "empty flow entry": "a: [b, , c]\n",
    "trailing comma": "a: [b, c,]\n",
    "adjacent flow value": 'a: {"b":1}\n',
    "colon in a flow scalar": "a: [http://x]\n",
    "comment inside a flow collection": "a: [b, # c\n  d]\n",
    "text after a flow collection": "a: [b] c\n",
    "duplicate flow key": "a: {b: 1, b: 2}\n",
    "block scalar": "a: |\n  text\n",
    "folded scalar": "a: >\n  text\n",
    "multi-line plain scalar": "a: one\n  two\n",
    "anchor and alias": "a: &x 1\nb: *x\n",
    "merge key": "a: &x {b: 1}\nc:\n  <<: *x\n",
    "tag": "a: !!str 1\n",
    "escape in double quotes": 'a: "x\\ty"\n',
    "unterminated quote": "a: 'x\n",
    "duplicate key": "a: 1\na: 2\n",
    "tab": "a:\t1\n",
    "carriage return": "a: 1\r\nb: 2\r\n",
    "byte order mark": "\ufeffa: 1\n",
    "value after value": "a: b: c\n",
    "key with a space": "a b: 1\n",
    "bad indentation": "a:\n    b: 1\n  c: 2\n",
    "sequence beside a mapping": "a: 1\n- b\n",
    "more indented after a scalar": "a: 1\n  b: 2\n",
    "root sequence": "- a: 1\n",
    "root scalar": "just a string\n",
    "second root less indented": "  a: 1\nb: 2\n",
    "directive": "%YAML 1.1\n---\na: 1\n",
    "content after the marker": "--- a: 1\n",
    "timestamp": "a: 2001-12-14\n",
    "complex key": "? a\n: 1\n",
    "comment without a space": "a: 'x'#c\n",
    "long key": "k" * 1100 + ": 1\n",
    "deep nesting": "".join(" " * i + "k:\n" for i in range(200)),
}


@pytest.mark.parametrize("name", list(READ))
def test_reads_block_style_exactly_as_libyaml(name: str) -> None:
    text = textwrap.dedent(READ[name])
    assert assert_agrees(text) is not None, "the fast reader should read this one"


@pytest.mark.parametrize("name", list(LEFT_TO_LIBYAML))
def test_leaves_everything_else_to_libyaml(name: str) -> None:
    assert load_plain_documents(LEFT_TO_LIBYAML[name]) is None


def test_values_are_typed_as_pyyaml_types_them() -> None:
    [(data, line, column)] = load_plain_documents("a: 80\nb: 'x'\nc: on\nd: ~\ne: 1.0\n") or []
    assert data == {"a": 80, "b": "x", "c": True, "d": None, "e": 1.0}
    assert (line, column) == (1, 1)


# Whatever PyYAML's dumper writes in block style, the fast reader reads (or leaves to libyaml) identically.
scalars = (
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
    | st.sampled_from(["yes", "no", "on", "null", "~", "1:20", "0x1F", "017", ".5", "-", "a: b", "#x", "'", '"'])
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)
keys = st.text(alphabet="abcxyz-_./019 :'\"#", min_size=1, max_size=8) | st.integers(0, 99) | st.booleans()
trees = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=20
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.dictionaries(keys, trees, min_size=1, max_size=5), min_size=1, max_size=3),
    st.sampled_from([2, 4]),
    st.sampled_from([False, None]),  # block style, or flow style for the innermost collections
)
def test_agrees_with_libyaml_on_dumped_documents(
    documents: list[dict[Any, Any]], indent: int, flow: bool | None
) -> None:
    text = yaml.safe_dump_all(documents, default_flow_style=flow, indent=indent, allow_unicode=True, width=1000)
    assert_agrees(text)


# Small edits of a valid file: the fast reader reads the result as libyaml does, or leaves it to libyaml.
BASE = textwrap.dedent(READ["mapping and sequences"]) + textwrap.dedent(
    READ["comments, blank lines and document markers"]
)
EDIT_CHARACTERS = " -:#'\"\n\tax1[]{}&*!|>?%@`,.~\\"


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(BASE)), st.integers(0, 2), st.sampled_from(list(EDIT_CHARACTERS))),
        min_size=1,
        max_size=4,
    )
)
def test_agrees_with_libyaml_on_edited_files(edits: list[tuple[int, int, str]]) -> None:
    text = BASE
    for position, removed, inserted in edits:
        position = min(position, len(text))
        text = text[:position] + inserted + text[position + removed :]
    assert_agrees(text)
