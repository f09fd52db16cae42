"""Verifiable draws: commit to a secret seed, draw, reveal the seed.

1. ``draw.create``: the node picks a 32-byte random seed and publishes only
   ``commitment = SHA-256(seed bytes)`` (hex). The seed cannot be changed later
   without the commitment exposing it.
2. ``draw.run``: the eligible identities are fixed (the viewers present then),
   the winners are computed from the seed and the sorted identities, and the
   seed is revealed with them.
3. Anyone re-computes: ``SHA-256(bytes.fromhex(seed)) == commitment`` and
   ``winners(seed, participants, k) == published winners`` (this module, or the
   eight lines of the algorithm in docs/segments.md).

Algorithm (``k`` winners among ``participants``)::

    remaining = sorted(set(participants))          # Python str order: by code point
    for r in range(min(k, len(remaining))):
        digest = SHA-256(f"{seed}:{r}:" + "\\n".join(remaining))   # UTF-8, seed in hex
        winner = remaining.pop(int(digest_hex, 16) % len(remaining))
"""

from __future__ import annotations

import hashlib
import secrets

ALGORITHM = (
    "commitment = sha256(bytes.fromhex(seed)).hexdigest(); remaining = sorted(set(participants)); "
    "for r in range(min(k, len(remaining))): digest = sha256((f'{seed}:{r}:' + '\\n'.join(remaining))"
    ".encode('utf-8')).hexdigest(); winners.append(remaining.pop(int(digest, 16) % len(remaining)))"
)


def new_seed() -> str:
    return secrets.token_hex(32)


def commitment(seed: str) -> str:
    return hashlib.sha256(bytes.fromhex(seed)).hexdigest()


def winners(seed: str, participants: list[str] | set[str], k: int = 1) -> list[str]:
    remaining = sorted(set(participants))
    out: list[str] = []
    for r in range(min(k, len(remaining))):
        digest = hashlib.sha256((f"{seed}:{r}:" + "\n".join(remaining)).encode("utf-8")).hexdigest()
        out.append(remaining.pop(int(digest, 16) % len(remaining)))
    return out


def verify(seed: str, published_commitment: str, participants: list[str], published_winners: list[str]) -> bool:
    """Whether a revealed draw is what its commitment and algorithm say."""
    try:
        ok = commitment(seed) == published_commitment
    except ValueError:
        return False
    return ok and winners(seed, participants, len(published_winners)) == list(published_winners)
