"""HTTP header names and values, as Istio validates them and as Envoy will parse them."""

from __future__ import annotations

import re

# RFC 7230 token characters.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")
PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})
# `@request.auth.claims.<name>` or `@request.auth.claims[a][b]`: routing on a JWT claim (gateways only).
_JWT_CLAIM = re.compile(r"^@request\.auth\.claims(?:\.[^.\[\]]+|(?:\[[^\[\]]+\])+)$")
# Envoy refuses NUL, CR, LF and other control characters (except tab) in a header value.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_jwt_claim(name: str) -> bool:
    return bool(_JWT_CLAIM.match(name))


def match_header_name_error(name: str) -> str | None:
    """A header a route matches on: a token, a pseudo-header, or a JWT claim."""
    if not name:
        return "a header name cannot be empty"
    if is_jwt_claim(name) or name in PSEUDO_HEADERS or _TOKEN.match(name):
        return None
    return f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"


def cors_header_name_error(name: str) -> str | None:
    if name == "*":
        return None
    if not name:
        return "a header name cannot be empty"
    return None if _TOKEN.match(name) else f"{name!r} is not a valid header name"


def is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def request_set_name_error(name: str) -> str | None:
    """Headers a route adds to or sets on the request: anything but `:`-prefixed ones (`:authority`/`host` ok)."""
    if not name:
        return "a header name cannot be empty"
    if name.startswith(":") and not is_authority_header(name):
        return f"header {name!r} cannot be set: Envoy does not let routes change ':'-prefixed headers"
    return None


def modify_name_error(name: str) -> str | None:
    """Headers removed from the request, or changed on the response: not `host` and no `:` prefix."""
    if not name:
        return "a header name cannot be empty"
    if name.lower() == "host":
        return "the Host header cannot be removed or set here; use rewrite.authority"
    if name.startswith(":"):
        return f"header {name!r} cannot be changed: Envoy does not let routes change ':'-prefixed headers"
    return None


def header_value_error(value: str) -> str | None:
    """No control characters, and `%` used as Envoy's formatter expects (`%%` for a literal percent)."""
    if _CONTROL.search(value):
        return "the header value contains a control character (newline, NUL, ...)"
    problem = _formatter_error(value)
    return f"{problem} in header value {value!r}" if problem else None


def _formatter_error(value: str) -> str | None:
    """Port of the state machine of Envoy's header formatter parser (as istio's header_value_validator)."""
    literal, name, expect_array, expect_string, string, expect_delim, expect_args_end, expect_var_end = range(8)
    state = literal
    pos = 0
    while pos < len(value):
        ch = value[pos]
        has_next = pos + 1 < len(value)
        if state == literal:
            if ch == "%":
                if not has_next:
                    return "un-escaped % (write %% for a literal percent sign)"
                if value[pos + 1] == "%":
                    pos += 1
                else:
                    state = name
        elif state == name:
            if ch == "%":
                state = literal
            elif ch == "(":
                state = expect_array
        elif state == expect_array:
            if ch == "[":
                state = expect_string
            elif ch != " ":
                state = string
        elif state == expect_delim:
            if ch == ",":
                state = expect_string
            elif ch == "]":
                state = expect_args_end
            elif ch != " ":
                return "expected ',', ']' or a space in a %VAR([...])% argument list"
        elif state == expect_string:
            if ch == '"':
                state = string
            elif ch != " ":
                return "expected '\"' in a %VAR([...])% argument list"
        elif state == string:
            if ch == "\\":
                if not has_next:
                    return "un-terminated backslash in a %VAR(...)% argument"
                pos += 1
            elif ch == ")":
                state = expect_var_end
            elif ch == '"':
                state = expect_delim
        elif state == expect_args_end:
            if ch == ")":
                state = expect_var_end
            elif ch != " ":
                return "expected ')' after a %VAR([...])% argument list"
        elif state == expect_var_end:
            if ch == "%":
                state = literal
            elif ch != " ":
                return "expected '%' to close a %VAR(...)% expression"
        pos += 1
    if state != literal:
        return "un-terminated %VAR% expression (write %% for a literal percent sign)"
    return None
