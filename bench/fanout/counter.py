"""ctypes wrapper around counter.c, built on first use with the system C compiler."""

from __future__ import annotations

import ctypes
import hashlib
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "counter.c"
BUILD = HERE / ".build"
STREAMS = 4
PER_VIEWER = 4 + 3 * STREAMS
RECORD = struct.Struct("<IBBHIqH")  # viewer, kind, pad, port (network order), ipv4, ts ns, length
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33


def build() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    lib = BUILD / f"counter-{digest}.so"
    if not lib.exists():
        BUILD.mkdir(exist_ok=True)
        tmp = lib.with_suffix(".tmp")
        subprocess.run(["cc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)], check=True)
        tmp.rename(lib)
    return lib


@dataclass(slots=True)
class Datagram:
    viewer: int
    sampled_rtp: bool
    addr: tuple[str, int]
    ts_ns: int
    data: bytes


@dataclass(slots=True)
class StreamCount:
    ssrc: int
    packets: int
    ext_max: int


@dataclass(slots=True)
class ViewerCount:
    rtp_packets: int
    rtp_bytes: int
    other_packets: int
    streams: list[StreamCount]


class Counter:
    """One epoll set over all viewer sockets; see counter.c."""

    def __init__(self, max_viewers: int, sample_every: int = 100, out_bytes: int = 4 << 20) -> None:
        self.lib = ctypes.CDLL(str(build()))
        self.max = max_viewers
        rc = self.lib.fo_init(max_viewers, sample_every)
        if rc < 0:
            raise OSError(-rc, "fo_init")
        self.out = ctypes.create_string_buffer(out_bytes)
        self.cap = out_bytes
        self.snap_buf = (ctypes.c_int64 * (PER_VIEWER * max_viewers))()

    def add(self, idx: int, sock: socket.socket, rcvbuf: int = 2 << 20) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rc = self.lib.fo_add(idx, sock.fileno())
        if rc < 0:
            raise OSError(-rc, "fo_add")

    def remove(self, idx: int) -> None:
        self.lib.fo_remove(idx)

    def sweep(self) -> list[Datagram]:
        n = self.lib.fo_sweep(self.out, self.cap)
        raw = self.out.raw[:n] if n else b""
        out: list[Datagram] = []
        pos = 0
        while pos < n:
            viewer, kind, _, port, ip, ts, length = RECORD.unpack_from(raw, pos)
            pos += RECORD.size
            addr = (socket.inet_ntoa(struct.pack("<I", ip)), socket.ntohs(port))
            out.append(Datagram(viewer, kind == 1, addr, ts, raw[pos : pos + length]))
            pos += length
        return out

    def snapshot(self) -> list[ViewerCount]:
        self.lib.fo_snapshot(self.snap_buf)
        b = self.snap_buf
        res = []
        for i in range(self.max):
            k = i * PER_VIEWER
            streams = [
                StreamCount(b[k + 4 + 3 * j], b[k + 5 + 3 * j], b[k + 6 + 3 * j])
                for j in range(STREAMS)
                if b[k + 4 + 3 * j] >= 0
            ]
            res.append(ViewerCount(b[k], b[k + 1], b[k + 2], streams))
        return res
