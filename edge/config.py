"""Typed node configuration: built-in defaults < a TOML file < EDGE_* environment.

The defaults here are the embedded default and mirror ``conf/edge.toml`` (a test
keeps the two in step). An environment variable ``EDGE_<SECTION>_<KEY>`` overrides
any key, e.g. ``EDGE_HTTP_PORT=9090``; lists are comma-separated.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError


@dataclass(slots=True)
class NodeConfig:
    name: str = "edge-1"
    region: str = "local"
    data_dir: str = "~/.local/share/edge"


@dataclass(slots=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 65536
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    public_url: str = ""


@dataclass(slots=True)
class AuthConfig:
    secret: str = ""
    issuer: str = "edge"
    token_ttl_seconds: int = 86400


@dataclass(slots=True)
class MediaConfig:
    ice_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    # One UDP port for every peer (edge/transport/udpmux.py); false = a socket per peer.
    udp_mux: bool = True
    # The port of udp_mux, on each ICE address; 0 = a free port the OS picks.
    udp_port: int = 7881
    inactivity_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 15.0
    keyframe_min_interval_ms: int = 250
    retransmit_buffer_packets: int = 1024
    max_publish_bitrate: int = 4_000_000
    dataplane: str = "python"
    # Earlier Opus payloads each audio packet also carries (RFC 2198 RED) to
    # viewers that negotiate it; 0 = no RED. Each step adds one Opus payload.
    audio_red_distance: int = 3
    # Ask publishers to send audio as RED (answered first: browsers then do);
    # unwrapped at ingress, packets lost on the uplink rebuilt from it.
    publisher_red: bool = True
    # Ceiling of the playout delay the node asks of a viewer on a lossy link
    # (edge/media/playout.py), in ms; 0 = never ask (lowest latency, more freezes).
    playout_delay_max_ms: int = 800
    # What every new viewer is asked for until its link proves clean (then 0).
    playout_delay_start_ms: int = 450
    # Transport-wide congestion control for viewers that offer it (browsers do):
    # the node stamps every packet, the viewer reports arrivals, and the node's
    # own delay/loss estimator (edge/media/bwe.py) replaces the viewer's REMB.
    twcc: bool = True
    # Drop VP8 temporal layers (Chromium sends three per simulcast layer) as the
    # first step down when a viewer's budget is short (edge/media/temporal.py).
    temporal_layers: bool = True


@dataclass(slots=True)
class LimitsConfig:
    sessions_per_minute: int = 120
    max_rooms: int = 1000
    max_viewers_per_room: int = 5000
    max_publishers_per_room: int = 8
    # Every message connection, whatever it sends (a floor under per-type limits).
    messages_per_connection: int = 50
    messages_window_seconds: float = 10.0


@dataclass(slots=True)
class LogConfig:
    format: str = "auto"
    level: str = "info"


@dataclass(slots=True)
class RecordingConfig:
    # Master switch: false = the node records nothing (stored recordings are still served).
    enabled: bool = False
    # Record rooms automatically when they go live (those in `rooms`, every room when
    # `rooms` is empty); false = only rooms started with POST /v1/rooms/{room}/recording.
    auto: bool = True
    rooms: list[str] = field(default_factory=list)
    # Where recordings go; empty = <node.data_dir>/recordings.
    directory: str = ""
    # Replays (media, markers, the /replay page's data) need no token; false = a token of the room.
    public: bool = True
    # Packets a room's recording may hold in memory before its writer thread catches up.
    buffer_packets: int = 20000


@dataclass(slots=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    # Plugin sections ([plugins.<name>]) and the plugin list, kept as raw TOML
    # so plugin authors own their schema.
    plugins: dict[str, Any] = field(default_factory=dict)

    @property
    def data_path(self) -> Path:
        return Path(os.path.expanduser(self.node.data_dir))

    @property
    def recording_path(self) -> Path:
        configured = self.recording.directory
        return Path(os.path.expanduser(configured)) if configured else self.data_path / "recordings"


SECTIONS = ("node", "http", "auth", "media", "limits", "log", "recording")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [str(v) for v in value]
    if kind is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected a boolean, got {value!r}")
        return bool(value)
    try:
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from None
    return str(value)


def _apply(section_obj: Any, values: Mapping[str, Any], section: str) -> None:
    hints = typing.get_type_hints(type(section_obj))
    names = {f.name for f in dataclasses.fields(section_obj)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown setting [{section}] {key}")
        setattr(section_obj, key, _coerce(value, hints[key], f"[{section}] {key}"))


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the config: defaults, then the TOML file (if any), then EDGE_* env."""
    env = os.environ if env is None else env
    config = Config()
    if path is None and env.get("EDGE_CONFIG"):
        path = env["EDGE_CONFIG"]
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for section, values in data.items():
            if section == "plugins":
                config.plugins = dict(values) if isinstance(values, dict) else {"load": values}
                continue
            if section not in SECTIONS or not isinstance(values, dict):
                raise ConfigError(f"unknown config section [{section}]")
            _apply(getattr(config, section), values, section)
    for name, value in env.items():
        if not name.startswith("EDGE_") or name == "EDGE_CONFIG":
            continue
        rest = name[5:].lower()
        section, _, key = rest.partition("_")
        if section in SECTIONS and key:
            _apply(getattr(config, section), {key: value}, section)
    if config.media.dataplane not in ("python", "native"):
        raise ConfigError("[media] dataplane must be 'python' or 'native'")
    if not 0 <= config.media.audio_red_distance <= 3:
        raise ConfigError(
            f"[media] audio_red_distance must be 0-3, got {config.media.audio_red_distance}"
        )
    if not 0 <= config.media.playout_delay_max_ms <= 4000:
        raise ConfigError(
            f"[media] playout_delay_max_ms must be 0-4000, got {config.media.playout_delay_max_ms}"
        )
    if not 0 <= config.media.playout_delay_start_ms <= 4000:
        raise ConfigError(
            f"[media] playout_delay_start_ms must be 0-4000, got {config.media.playout_delay_start_ms}"
        )
    if not 0 <= config.media.udp_port <= 65535:
        raise ConfigError(f"[media] udp_port must be 0-65535, got {config.media.udp_port}")
    if config.log.format not in ("auto", "json", "console"):
        raise ConfigError("[log] format must be 'auto', 'json' or 'console'")
    return config
