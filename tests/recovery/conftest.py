"""Loss-recovery features towards viewers run on both data planes: one node per plane."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from ..nodeproc import NodeProcess


@pytest.fixture(scope="module", params=["python", "native"])
def plane_node(request: pytest.FixtureRequest) -> Iterator[NodeProcess]:
    # Viewers start without a playout delay here, so that the tests see it come with loss.
    env = {"EDGE_MEDIA_DATAPLANE": request.param, "EDGE_LOAD_PLUGINS": "chat", "EDGE_MEDIA_PLAYOUT_DELAY_START_MS": "0"}
    proc = NodeProcess(env=env).start()
    plane = httpx.get(proc.url + "/healthz", timeout=5).json()["dataplane"]
    assert plane == request.param, f"the node runs the {plane} plane: " + proc.log()
    yield proc
    proc.stop()
