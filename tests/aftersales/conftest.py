from __future__ import annotations

from typing import Iterator

import pytest

from ..nodeproc import NodeProcess
from .clients import aftersales_node, node_config


@pytest.fixture(scope="session")
def as_node() -> Iterator[NodeProcess]:
    """One real node with the after-sales plugin and the commerce, loyalty and
    recordings test doubles, shared by the tests (rooms and identities keep them apart)."""
    proc = aftersales_node(node_config({"loyalty": True, "recordings": True})).start()
    yield proc
    proc.stop()
