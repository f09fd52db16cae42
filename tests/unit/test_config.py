import dataclasses
import tomllib
from pathlib import Path

import pytest

from edge.config import SECTIONS, Config, load_config
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_conf_edge_toml_matches_builtin_defaults() -> None:
    data = tomllib.loads((ROOT / "conf" / "edge.toml").read_text())
    defaults = Config()
    assert set(data) == set(SECTIONS)
    for section in SECTIONS:
        fields = dataclasses.asdict(getattr(defaults, section))
        assert data[section] == fields, section


def test_env_overrides_file_and_coerces_types(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[http]\nport = 9000\n[media]\nice_addresses = ["10.0.0.1"]\n')
    config = load_config(path, env={"EDGE_HTTP_PORT": "9100", "EDGE_MEDIA_ICE_ADDRESSES": "1.2.3.4, 5.6.7.8",
                                    "EDGE_MEDIA_INACTIVITY_TIMEOUT_SECONDS": "2.5"})
    assert config.http.port == 9100
    assert config.media.ice_addresses == ["1.2.3.4", "5.6.7.8"]
    assert config.media.inactivity_timeout_seconds == 2.5
    assert (config.media.udp_mux, config.media.udp_port) == (True, 7881)  # the one-port default
    config = load_config(None, env={"EDGE_MEDIA_UDP_MUX": "false", "EDGE_MEDIA_UDP_PORT": "0"})
    assert (config.media.udp_mux, config.media.udp_port) == (False, 0)


@pytest.mark.parametrize(
    "text, env, message",
    [
        ("[http]\nport = 'x'\n", {}, "[http] port: expected int"),
        ("[nope]\na = 1\n", {}, "unknown config section [nope]"),
        ("[http]\nbogus = 1\n", {}, "unknown setting [http] bogus"),
        ("", {"EDGE_MEDIA_DATAPLANE": "gpu"}, "dataplane must be"),
        ("", {"EDGE_MEDIA_UDP_PORT": "70000"}, "[media] udp_port must be 0-65535"),
        ("", {"EDGE_MEDIA_UDP_MUX": "maybe"}, "[media] udp_mux: expected a boolean"),
        ("[http\n", {}, "is not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path, env=env)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/edge.toml", env={})
