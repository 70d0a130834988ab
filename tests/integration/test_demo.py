"""`reconciler demo` followed the way its printed instructions say, then stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from reconciler.cli.commands.demo import PORT_DEFAULTS
from reconciler.cli.localrun import free_port, stop_process_group
from tests.support import wait_for


def shell(command: str, cwd: Path) -> None:
    subprocess.run(command, shell=True, cwd=cwd, check=True, capture_output=True, timeout=30)


def answered_by(port: int) -> str:
    response = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": "shop.example.com"}, timeout=2)
    return str(response.json()["upstream"]) if response.status_code == 200 else ""


def test_demo_tour(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_DEFAULTS}
    flags = [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    output = (tmp_path / "demo.out").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", "demo", "--workdir", str(tmp_path), *flags],
        stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: b"Ctrl-C stops everything" in (tmp_path / "demo.out").read_bytes(), what="demo instructions")
        printed = (tmp_path / "demo.out").read_text()
        work = tmp_path / "gateway-config"
        assert f"cd {work}" in printed and f"127.0.0.1:{ports['gateway']}" in printed
        wait_for(lambda: answered_by(ports["gateway"]) == "blue", what="blue answering")

        shell("sed -i 's/subset: blue/subset: green/' routes/shop.yaml", work)
        shell("git commit -qam 'Route shop to green' && git push -q", work)
        wait_for(lambda: answered_by(ports["gateway"]) == "green", what="green after the commit")
        status = subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", "status", "--api", f"http://127.0.0.1:{ports['api']}",
             "--format", "json"], capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        fleet = json.loads(status.stdout)["fleets"][0]
        assert fleet["name"] == "public-ingress" and len(fleet["nodes"]) == 1

        shell("git revert --no-edit HEAD && git push -q", work)
        wait_for(lambda: answered_by(ports["gateway"]) == "blue", what="blue after the revert")

        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        time.sleep(0.2)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{ports['admin']}/ready", timeout=2)  # Envoy was stopped too
    finally:
        stop_process_group(demo)
