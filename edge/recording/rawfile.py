"""The raw recording of one Producer: length-prefixed records of clear RTP.

Layout (all integers big-endian)::

    b"EDGEREC1"                       magic, format version 1
    u32 n, n bytes                    JSON metadata: producer, kind, source, participant,
                                      role, codecs {payload type: {name, clock_rate, channels}}
    records, until the end of the file:
        u8  type                      1 = RTP packet, 2 = RTCP sender report
        f64 arrival                   node wall clock, seconds since the epoch
        u32 length
        length bytes                  RTP: the packet exactly as received (after SRTP,
                                      RTX unwrapped); SR: u64 NTP timestamp, u32 RTP timestamp

A file cut short (the node was killed mid-write) reads up to its last whole record.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO, Iterator

MAGIC = b"EDGEREC1"
RTP = 1
SR = 2

_LENGTH = struct.Struct("!I")
RECORD = struct.Struct("!BdI")
SR_BODY = struct.Struct("!QI")

WRITE_BUFFER = 256 * 1024


class RawTrackWriter:
    """Appends records to one producer's raw file (used by the writer thread only)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "wb", buffering=WRITE_BUFFER)  # noqa: SIM115
        header = json.dumps(meta, separators=(",", ":")).encode()
        self.file.write(MAGIC + _LENGTH.pack(len(header)) + header)
        self.packets = 0
        self.bytes = 0

    def rtp(self, arrival: float, packet: bytes) -> None:
        self.file.write(RECORD.pack(RTP, arrival, len(packet)))
        self.file.write(packet)
        self.packets += 1
        self.bytes += len(packet)

    def sender_report(self, arrival: float, ntp: int, rtp_timestamp: int) -> None:
        self.file.write(RECORD.pack(SR, arrival, SR_BODY.size))
        self.file.write(SR_BODY.pack(ntp, rtp_timestamp))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def read_meta(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return _header(f, path)


def _header(f: BinaryIO, path: Path) -> dict[str, Any]:
    head = f.read(len(MAGIC) + _LENGTH.size)
    if len(head) < len(MAGIC) + _LENGTH.size or head[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{path} is not an edge raw recording")
    (length,) = _LENGTH.unpack_from(head, len(MAGIC))
    body = f.read(length)
    if len(body) != length:
        raise ValueError(f"{path}: truncated header")
    meta = json.loads(body)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: bad header")
    return meta


def read_records(path: Path) -> tuple[dict[str, Any], Iterator[tuple[int, float, bytes]]]:
    """The metadata and an iterator of (type, arrival, body), in arrival order."""
    f = open(path, "rb", buffering=WRITE_BUFFER)  # noqa: SIM115
    try:
        meta = _header(f, path)
    except BaseException:
        f.close()
        raise

    def records() -> Iterator[tuple[int, float, bytes]]:
        with f:
            size = RECORD.size
            while True:
                head = f.read(size)
                if len(head) < size:
                    return
                kind, arrival, length = RECORD.unpack(head)
                body = f.read(length)
                if len(body) < length:
                    return
                yield kind, arrival, body

    return meta, records()


def parse_sender_report(body: bytes) -> tuple[int, int]:
    """(NTP timestamp, RTP timestamp) of an SR record."""
    ntp, rtp_timestamp = SR_BODY.unpack(body)
    return ntp, rtp_timestamp
