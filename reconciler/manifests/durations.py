"""Go-style durations (`500ms`, `1h30m`, `0.5s`), as Istio parses them with time.ParseDuration."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Duration:
    nanos: int

    @property
    def seconds(self) -> float:
        return self.nanos / 1e9

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse like Go's time.ParseDuration; a bare `0` is allowed, negative durations are not."""
        raw = text.strip()
        if raw == "0":
            return cls(0)
        if not raw or raw.startswith(("-", "+")):
            raise DurationError(f"{text!r} is not a duration; write e.g. 500ms, 10s, 1m30s")
        pos, total = 0, 0
        while pos < len(raw):
            match = _PART.match(raw, pos)
            if match is None:
                raise DurationError(
                    f"{text!r} is not a duration (units: ns, us, ms, s, m, h; write e.g. 500ms, 10s, 1m30s)"
                )
            number, unit = match.groups()
            whole, _, frac = number.partition(".")
            scale = _UNIT_NANOS[unit]
            total += int(whole or "0") * scale
            if frac:
                total += int(frac) * scale // 10 ** len(frac)
            pos = match.end()
        return cls(total)

    def __str__(self) -> str:
        """Shortest Go-style spelling, e.g. 1.5s, 250ms, 2m."""
        if self.nanos == 0:
            return "0s"
        for unit in ("h", "m", "s", "ms", "us", "ns"):
            scale = _UNIT_NANOS[unit]
            if self.nanos % scale == 0:
                return f"{self.nanos // scale}{unit}"
        return f"{self.nanos / 1e9:g}s"
