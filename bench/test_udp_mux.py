"""Micro-benchmarks of the UdpMux demux (edge/transport/udpmux.py), per ingress datagram.

Run from the repo root (bench/ is not part of the CI test run)::

    pytest bench/test_udp_mux.py --benchmark-only

What is measured: the Python work from "asyncio hands a datagram to the
protocol" to "it is in the aioice Connection's queue" (where aiortc's DTLS
transport picks it up), for a 1200-byte SRTP datagram:

* ``test_srtp_per_peer_socket``: aioice's own ``StunProtocol.datagram_received``
  (the ``udp_mux = false`` path): it first tries to parse every datagram as
  STUN and takes the ValueError as "not STUN".
* ``test_srtp_via_mux``: ``MuxEndpoint.datagram_received`` with 1,000 remote
  addresses known: first-byte check, one dict lookup, the same
  ``Connection.data_received``.
* ``test_stun_request_via_mux``: an authenticated binding request (a consent
  check) through the mux: parse, MESSAGE-INTEGRITY check, aioice's own
  ``request_received`` (which checks again and sends the signed response).

Both SRTP benchmarks take the datagram out of the queue again after each call
(the same cost in both), so the queue does not grow.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Iterator

import pytest
from aioice import stun
from aioice.ice import Connection, StunProtocol

from edge.transport.udpmux import UdpMux

SRTP = b"\x80\x60" + os.urandom(1198)
PEERS = 1000


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


def _connection() -> Connection:
    connection = Connection(ice_controlling=False)
    connection.remote_username = "peer"
    connection.remote_password = "p" * 22
    return connection


def test_srtp_per_peer_socket(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    connection = _connection()
    protocol = StunProtocol(connection)
    protocol.local_candidate = type("C", (), {"component": 1})()  # type: ignore[assignment]
    addr = ("127.0.0.1", 40000)
    queue = connection._queue

    def one() -> None:
        protocol.datagram_received(SRTP, addr)
        queue.get_nowait()

    benchmark(one)


@pytest.fixture
def mux(loop: asyncio.AbstractEventLoop) -> Iterator[UdpMux]:
    mux = UdpMux(["127.0.0.1"], 0)
    loop.run_until_complete(mux.start())
    yield mux
    mux.close()


def _peers(mux: UdpMux) -> list[tuple[Any, Connection, tuple[str, int]]]:
    endpoint = mux.endpoints[0]
    out = []
    for i in range(PEERS):
        connection = _connection()
        mux.adopt(connection)
        protocol = endpoint.attach(connection, 1)
        addr = ("127.1.%d.%d" % (i // 250, i % 250 + 1), 50000 + i)  # loopback: nothing leaves the host
        endpoint._learn(addr, protocol)
        out.append((protocol, connection, addr))
    return out


def test_srtp_via_mux(benchmark: Any, mux: UdpMux) -> None:
    peers = _peers(mux)
    endpoint = mux.endpoints[0]
    _, connection, addr = peers[PEERS // 2]
    queue = connection._queue

    def one() -> None:
        endpoint.datagram_received(SRTP, addr)
        queue.get_nowait()

    benchmark(one)
    assert mux.dropped["unknown_address"] == 0


def test_stun_request_via_mux(benchmark: Any, mux: UdpMux) -> None:
    peers = _peers(mux)
    endpoint = mux.endpoints[0]
    _, connection, addr = peers[PEERS // 2]
    connection._early_checks_done = True
    connection.check_incoming = lambda *args: None  # type: ignore[method-assign]  # no pair bookkeeping
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{connection.local_username}:peer"
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(connection.local_password.encode())
    data = bytes(request)
    # The signed response goes to a loopback address where nothing listens.
    benchmark(endpoint.datagram_received, data, addr)
    assert mux.dropped["unknown_ufrag"] == 0
