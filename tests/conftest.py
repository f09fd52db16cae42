from __future__ import annotations

from typing import Iterator

import pytest

from edge.transport.webrtc import install_ice_addresses

from .nodeproc import NodeProcess

# The aiortc peers of the tests live on loopback, like the node.
install_ice_addresses(["127.0.0.1"])


@pytest.fixture(scope="session")
def node() -> Iterator[NodeProcess]:
    """One real `edge serve` process shared by the tests (rooms keep them apart).

    It loads only the chat plugin: other first-party plugins (segments' welcome
    coupons, commerce's pins) add envelopes that the core and chat tests do not
    expect. Each plugin's own suite starts a node with the plugins it needs, and
    tests/integration/test_all_plugins.py runs them all together.
    """
    proc = NodeProcess(env={"EDGE_LOAD_PLUGINS": "chat"}).start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_node() -> Iterator[NodeProcess]:
    """A node of the test's own, for tests that change config or kill it."""
    proc = NodeProcess()
    yield proc
    proc.stop()
