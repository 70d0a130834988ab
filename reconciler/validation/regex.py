"""Regular expressions checked with RE2 itself, the engine Envoy runs, including its program-size limit.

istiod compiles regexes with Go's `regexp` and caps their length at 1024 characters as a stand-in for
Envoy's `re2.max_program_size` limit; a pattern under the cap can still compile to a larger program and be
NACKed. We compile with the `google-re2` binding and compare the real program size with the limit our
Envoy bootstrap sets (`re2.max_program_size.error_level`).
"""

from __future__ import annotations

from functools import lru_cache

import re2

# istio's own cap (validateStringRegexp); kept so a config we accept is also one istiod would accept.
MAX_REGEX_LENGTH = 1024
# The `re2.max_program_size.error_level` runtime value of our bootstrap (reconciler.cli.bootstrap) and istiod's.
MAX_PROGRAM_SIZE = 32768


@lru_cache(maxsize=4096)
def regex_error(pattern: str, max_program_size: int = MAX_PROGRAM_SIZE) -> tuple[str, str] | None:
    """(code, sentence) saying why Envoy would reject `pattern`, or None. Cached: patterns repeat across routes."""
    if not pattern:
        return "empty-regex", "the regex is empty"
    if len(pattern) > MAX_REGEX_LENGTH:
        return "regex-too-long", f"the regex is {len(pattern)} characters long; at most {MAX_REGEX_LENGTH} are allowed"
    options = re2.Options()
    options.log_errors = False  # RE2 would print every rejected pattern to stderr
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return "invalid-regex", f"not a valid RE2 regex ({detail}); RE2 has no lookaround or backreferences"
    except (TypeError, ValueError, UnicodeError) as exc:
        return "invalid-regex", f"not a valid RE2 regex ({exc})"
    size = int(compiled.programsize)
    if size > max_program_size:
        return "regex-too-complex", (
            f"the regex compiles to an RE2 program of size {size}, over Envoy's limit of {max_program_size}; "
            "simplify it (fewer repetitions, smaller character classes)"
        )
    return None
