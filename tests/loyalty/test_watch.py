"""Watch-time points: measured by the node from the viewer's WHEP session, never claimed.

One test runs a real node (in-process, served by uvicorn) with a real aiortc
WHEP viewer and a 1-second block; the others drive the service's session and
tick entry points with a fake clock, for a two-hour watcher.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from edge_loyalty.config import parse_config
from edge_loyalty.service import Loyalty
from tests.clients import WhepViewer
from tests.unit.hook_probe import ProbePlugin, serve

from .helpers import ADMIN, T0, bearer, make_node, token


async def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {value!r}")
        await asyncio.sleep(0.1)


async def test_watch_points_from_a_real_whep_session(tmp_path: Path) -> None:
    probe = ProbePlugin()
    config = {"watch_block_seconds": 1, "watch_points": 1, "watch_growth": 2, "sweep_seconds": 3600}
    app, plugin = make_node(tmp_path, config, ("probe", probe))
    async with serve(app) as url:
        viewer = WhepViewer(url, "live1", token("vic", "viewer", "live1"))
        response = await viewer.start()
        assert response.status_code == 201, response.text
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                async def me() -> dict[str, Any]:
                    r = await http.get("/v1/plugins/loyalty/me", headers=bearer("vic"))
                    assert r.status_code == 200, r.text
                    return r.json()  # type: ignore[no-any-return]

                # the tick credits completed blocks while the session is still live
                live = await _eventually(lambda: _at_least(me, 2))
                assert live["growth"] == 2 * live["points"]
                assert await plugin.service.settle() is None
        finally:
            await viewer.stop()  # DELETE: the session ends
        (ended,) = await probe.record.await_for("edge_session_ended", 1, timeout=10)
        session = ended["session"]
        await plugin.service.settle()
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.get("/v1/plugins/loyalty/members/vic/history?limit=500", headers=ADMIN)
            entries = r.json()["entries"]
            status = (await http.get("/v1/plugins/loyalty/members/vic", headers=ADMIN)).json()
    blocks = int(session.media_seconds // 1)
    watch = [e for e in entries if e["rule"] == "watch" and e["account"] == "points"]
    assert sorted(e["event_id"] for e in watch) == sorted(f"watch:{session.id}:{k}" for k in range(1, blocks + 1))
    assert status["points"] == blocks and status["growth"] == 2 * blocks
    for e in watch:  # dated at the end of their block, by the node's clock
        k = int(e["event_id"].rsplit(":", 1)[1])
        assert abs(e["at"] - (session.connected_at + k)) < 1e-6


async def _at_least(me: Any, points: int) -> dict[str, Any] | None:
    body = await me()
    return body if body["points"] >= points else None


async def test_a_two_hour_watcher_earns_as_they_go(tmp_path: Path) -> None:
    now = [T0]
    svc = Loyalty(parse_config({"sweep_seconds": 3600}), clock=lambda: now[0])
    await svc.start(tmp_path / "l.sqlite3")
    try:
        svc.session_started("s1", "ann", "live1", T0)
        svc.tick(T0 + 599)
        await svc.settle()
        assert svc.balance("ann") == (0, 0)
        for minute in range(10, 121):
            svc.tick(T0 + minute * 60 + 0.5)
            if minute == 60:
                await svc.settle()
                assert svc.balance("ann")[0] == 6  # one hour in: six blocks already
        await svc.settle()
        assert svc.balance("ann")[0] == 12
        svc.session_ended("s1", "ann", "live1", T0, 2 * 3600 + 599)  # ends before the 13th block completes
        await svc.settle()
        assert svc.balance("ann")[0] == 12
        # a replay of the same session end credits nothing twice
        svc.session_ended("s1", "ann", "live1", T0, 2 * 3600 + 599)
        await svc.settle()
        assert svc.balance("ann")[0] == 12
        # a session the tick never saw (e.g. shorter than a tick) is credited at its end
        svc.session_ended("s2", "ann", "live1", T0 + 9000, 1300)
        await svc.settle()
        assert svc.balance("ann")[0] == 14
        # a session that never connected earns nothing
        svc.session_ended("s3", "ann", "live1", None, 0.0)
        await svc.settle()
        assert svc.balance("ann")[0] == 14
        assert svc.store is not None and svc.store.verify("ann") == ((14, 0), (14, 0))
    finally:
        await svc.stop()


async def test_watch_daily_cap(tmp_path: Path) -> None:
    svc = Loyalty(parse_config({"watch_block_seconds": 60, "watch_daily_cap": 5}), clock=lambda: T0)
    await svc.start(tmp_path / "l.sqlite3")
    try:
        svc.session_ended("a", "ann", "r", T0, 8 * 60)
        svc.session_ended("b", "ann", "r", T0 + 1000, 8 * 60)  # two tabs: still five blocks a day
        await svc.settle()
        assert svc.balance("ann")[0] == 5
    finally:
        await svc.stop()
