"""The installed distribution in a real `edge serve`: loaded from the `edge` entry point,
configured from the TOML file (tiers as an array of tables), writing its SQLite ledger,
and refusing a bad section at start-up."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from ..nodeproc import NodeProcess

CONFIG = """
[plugins.loyalty]
checkin_points = 2
downgrade = "never"

[[plugins.loyalty.tiers]]
name = "fan"
growth = 0

[[plugins.loyalty.tiers]]
name = "vip"
growth = 10
privileges = ["priority_service", "early_access"]
"""


def node(tmp_path: Path, config: Path) -> NodeProcess:
    env = {"EDGE_CONFIG": str(config), "EDGE_LOAD_PLUGINS": "loyalty", "EDGE_NODE_DATA_DIR": str(tmp_path / "data")}
    return NodeProcess(env=env)


def test_entry_point_config_and_ledger_file(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG)
    first = node(tmp_path, config).start()
    try:
        admin = first.admin_headers()
        plugins = httpx.get(f"{first.url}/v1/plugins", headers=admin, timeout=5).json()["plugins"]
        assert [p["name"] for p in plugins] == ["loyalty"]
        tiers = httpx.get(f"{first.url}/v1/plugins/loyalty/tiers", headers=admin, timeout=5).json()
        assert [t["name"] for t in tiers["tiers"]] == ["fan", "vip"] and tiers["downgrade"] == "never"
        r = httpx.post(
            f"{first.url}/v1/plugins/loyalty/members/zoe/adjust",
            json={"account": "growth", "amount": 12, "reason": "launch party"}, headers=admin, timeout=5,
        )
        assert r.status_code == 201, r.text
        mine = {"Authorization": "Bearer " + first.token("shop1", "zoe", "viewer")}
        me = httpx.get(f"{first.url}/v1/plugins/loyalty/me", headers=mine, timeout=5).json()
        assert (me["growth"], me["tier"]["name"]) == (12, "vip")
        assert me["privileges"] == ["early_access", "priority_service"]
    finally:
        assert first.stop() == 0, first.log()  # SIGTERM: a clean shutdown
    # the ledger is where the operator docs say (a restart reading it back: test_node.py)
    db = sqlite3.connect(tmp_path / "data" / "plugins" / "loyalty" / "loyalty.sqlite3")
    assert db.execute("SELECT identity, account, amount, reason, actor FROM ledger").fetchall() == [
        ("zoe", "growth", 12, "launch party", "ops")
    ]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_bad_section_stops_the_node(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("[plugins.loyalty]\nwatch_block_seconds = 0\n")
    env = {**node(tmp_path, config).env}
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "serve"], env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert b"watch_block_seconds" in done.stdout + done.stderr
