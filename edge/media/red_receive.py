"""RED (RFC 2198) from publishers: unwrapped at ingress, lost packets rebuilt.

Chromium offers ``red/48000/2`` on its audio m-line and sends RED when the
answer lists it first: each packet carries the previous Opus frame again
next to its own. The node answers publishers that way (transport/webrtc.py)
and unwraps every RED packet into the plain Opus packet it stands for, before
anything else sees it. When packets were lost on the publisher's uplink, the
redundant blocks of the next packet rebuild them: a block whose timestamp is
where a missing packet's would be (the stream's frame spacing, measured as
the timestamp span over the sequence gap) becomes that packet again, with
its own sequence number and timestamp.

Downstream, the producer is plain Opus: viewers that negotiated RED get it
rebuilt per viewer at the distance their own loss needs (edge/media/red.py),
the others get Opus. That is better than passing the publisher's RED through:
its one copy is sized for the publisher's link, not for each viewer's.
"""

from __future__ import annotations

from .red import MAX_DISTANCE, decode_red
from .rtp import RtpHeader, seq_diff, seq_newer, with_payload


class RedReceiver:
    """One publisher audio stream's RED, unwrapped."""

    __slots__ = ("primary_types", "highest", "highest_ts", "packets", "recovered")

    def __init__(self, primary_types: set[int]) -> None:
        self.primary_types = primary_types  # the producer's own payload types (Opus)
        self.highest: int | None = None  # the newest sequence number seen, and its timestamp
        self.highest_ts = 0
        self.packets = 0  # RED packets received
        self.recovered = 0  # packets rebuilt from redundancy

    def unwrap(self, data: bytes, header: RtpHeader) -> list[bytes]:
        """The plain packets ``data`` (a RED packet) stands for: rebuilt ones, oldest
        first, then its primary. ValueError when it is not valid RED."""
        blocks = decode_red(data[header.payload_offset : len(data) - header.padding_length], header.timestamp)
        self.packets += 1
        seq, ts = header.sequence_number, header.timestamp
        out: list[bytes] = []
        if self.highest is not None and seq_newer(seq, self.highest) and len(blocks) > 1:
            gap = seq_diff(seq, self.highest) - 1
            span = (ts - self.highest_ts) & 0xFFFFFFFF
            if 0 < gap <= MAX_DISTANCE and span % (gap + 1) == 0:
                step = span // (gap + 1)
                by_ts = {b.timestamp: b for b in blocks[:-1] if b.payload and b.payload_type in self.primary_types}
                for back in range(gap, 0, -1):
                    block = by_ts.get((ts - back * step) & 0xFFFFFFFF)
                    if block is not None:
                        out.append(_packet(data, header, block.payload_type, (seq - back) & 0xFFFF, block.timestamp, block.payload, False))
                        self.recovered += 1
        if self.highest is None or seq_newer(seq, self.highest):
            self.highest, self.highest_ts = seq, ts
        primary = blocks[-1]
        if primary.payload and primary.payload_type in self.primary_types:
            out.append(_packet(data, header, primary.payload_type, seq, ts, primary.payload, header.marker))
        return out



def _packet(
    data: bytes, header: RtpHeader, payload_type: int, seq: int, ts: int, payload: bytes, marker: bool
) -> bytes:
    return with_payload(
        data, header.payload_offset, payload_type, payload, marker=marker, sequence_number=seq, timestamp=ts
    )
