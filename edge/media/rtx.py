"""RTX towards viewers (RFC 4588): retransmissions on their own stream.

A viewer that negotiated ``rtx`` for a video codec (browsers do; the node's
answer then names an RTX SSRC in ``a=ssrc-group:FID``) gets repairs as RTX
packets: the RTX payload type and SSRC, the RTX stream's own sequence number,
and the payload preceded by the original sequence number (OSN). The receiver
tells a repair from a late original by that, and a send-side estimator sees it
as a packet of its own: each RTX packet takes a new transport-wide sequence
(edge/media/twcc.py) when the viewer negotiated TWCC.

The slot keeps the *clear* packets it sent (RetransmitBuffer, or the native
ring) so that an RTX packet can be built from one and protected; without RTX
it keeps the protected packets and a repair costs one send. Both data planes
build byte-identical RTX packets (tests/native).
"""

from __future__ import annotations

_HEADER = 12  # the node builds its packets without CSRCs


def rtx_packet(clear: bytes, rtx_payload_type: int, sequence_number: int, ssrc: int) -> bytes:
    """The RTX packet repairing ``clear`` (a packet the node built and sent)."""
    if len(clear) < _HEADER or clear[0] & 0x2F:
        raise ValueError("not a packet the node built (padding or CSRCs)")
    offset = _HEADER
    if clear[0] & 0x10:
        if len(clear) < _HEADER + 4:
            raise ValueError("RTP extension header is truncated")
        offset += 4 + 4 * int.from_bytes(clear[14:16], "big")
        if offset > len(clear):
            raise ValueError("RTP extension block is truncated")
    header = bytes((clear[0], (clear[1] & 0x80) | rtx_payload_type)) + (sequence_number & 0xFFFF).to_bytes(2, "big")
    return b"".join((header, clear[4:8], ssrc.to_bytes(4, "big"), clear[_HEADER:offset], clear[2:4], clear[offset:]))


def twcc_offset(packet: bytes, twcc_id: int) -> int | None:
    """Where the transport-wide sequence of a packet the node built sits (it is the
    first element of the extension block); None if the packet carries none."""
    if not packet[0] & 0x10 or len(packet) < _HEADER + 8:
        return None
    if packet[12:14] == b"\xbe\xde":
        return _HEADER + 5 if packet[16] >> 4 == twcc_id and packet[16] & 0x0F == 1 else None
    return _HEADER + 6 if packet[16] == twcc_id and packet[17] == 2 else None


def restamp_twcc(packet: bytes, at: int, sequence: int) -> bytes:
    """``packet`` with the transport-wide sequence at offset ``at`` (``twcc_offset``) replaced."""
    return packet[:at] + (sequence & 0xFFFF).to_bytes(2, "big") + packet[at + 2 :]
