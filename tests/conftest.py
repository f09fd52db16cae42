from __future__ import annotations

from typing import Iterator

import pytest

from edge.transport.webrtc import install_ice_addresses

from .nodeproc import NodeProcess

# The aiortc peers of the tests live on loopback, like the node.
install_ice_addresses(["127.0.0.1"])


@pytest.fixture(scope="session")
def node() -> Iterator[NodeProcess]:
    """One real `edge serve` process shared by the tests (rooms keep them apart)."""
    proc = NodeProcess().start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_node() -> Iterator[NodeProcess]:
    """A node of the test's own, for tests that change config or kill it."""
    proc = NodeProcess()
    yield proc
    proc.stop()
