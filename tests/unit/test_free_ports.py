"""Ports for the demo and the tests (reconciler/cli/localrun.py): free now, and never handed out twice."""

from __future__ import annotations

import socket

from reconciler.cli.localrun import free_port, free_ports


def test_no_port_is_handed_out_twice_across_addresses() -> None:
    # The kernel offers a released port again (about one call in thirteen here): a gateway listener and an
    # Envoy's admin API, each given a port this way and bound later, once got the same one.
    ports = [free_port() for _ in range(1000)] + [free_port("127.0.0.3") for _ in range(1000)] + free_ports(50)
    assert len(set(ports)) == len(ports)


def test_a_handed_out_port_is_free_to_bind() -> None:
    for port in free_ports(3, "127.0.0.2"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.2", port))
