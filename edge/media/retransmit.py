"""RetransmitBuffer: the last N packets sent to one consumer, for NACKs.

Packets are stored already SRTP-protected, so a retransmission is a plain
re-send of the same bytes: no second rewrite, no second encryption, and the
receiver sees exactly the packet it missed.
"""

from __future__ import annotations


class RetransmitBuffer:
    __slots__ = ("_mask", "_seqs", "_packets", "_nacked")

    def __init__(self, size: int = 1024) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError("RetransmitBuffer size must be a power of two")
        self._mask = size - 1
        self._seqs = [-1] * size
        self._packets: list[bytes | None] = [None] * size
        # NACKed since stored: a viewer re-NACKs a packet until it arrives, and
        # its loss is the packets it NACKed, not the NACKs it sent.
        self._nacked = [False] * size

    def __len__(self) -> int:
        return len(self._seqs)

    def put(self, sequence_number: int, packet: bytes) -> None:
        i = sequence_number & self._mask
        self._seqs[i] = sequence_number
        self._packets[i] = packet
        self._nacked[i] = False

    def get(self, sequence_number: int) -> bytes | None:
        i = sequence_number & self._mask
        if self._seqs[i] == sequence_number:
            return self._packets[i]
        return None

    def first_nack(self, sequence_number: int) -> bool:
        """True the first time a stored packet is NACKed (and marks it)."""
        i = sequence_number & self._mask
        if self._seqs[i] != sequence_number or self._nacked[i]:
            return False
        self._nacked[i] = True
        return True


def buffer_size(requested: int) -> int:
    """The power of two at or above ``requested`` (config is in packets)."""
    size = 1
    while size < max(1, requested):
        size <<= 1
    return size
