"""Simulcast in SDP (RFC 8851 ``a=rid``, RFC 8853 ``a=simulcast``) for WHIP answers.

aiortc 1.16 neither parses ``a=rid``/``a=simulcast`` nor keeps the
rtp-stream-id extensions in its answers, and a browser whose answer lacks
``a=simulcast:recv`` sends only its first encoding. The node therefore reads
the offer's simulcast description itself and adds the receive side of it to
aiortc's answer: the rid and repaired-rid extmaps (with the offer's ids), one
``a=rid:<id> recv`` per offered layer and ``a=simulcast:recv`` with the same
list. Plain text work on SDP: no aiortc API is involved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

EXT_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
EXT_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

# Layer names clients commonly use, lowest quality first. Offers list layers
# in the client's own order (Chrome: the order of sendEncodings), which says
# nothing about quality, so known names are ranked by meaning.
_KNOWN_ORDERS = (("q", "h", "f"), ("l", "m", "h"), ("low", "mid", "high"), ("0", "1", "2"))

_RID_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


@dataclass(slots=True)
class SimulcastOffer:
    """What one m-line offers: its rids (as listed in a=simulcast) and extension ids."""

    mid: str
    rids: list[str]  # lowest quality first (see order_rids)
    offer_order: list[str] = field(default_factory=list)  # as listed in the offer
    paused: set[str] = field(default_factory=set)  # "~rid": offered but not sent now
    rid_ext_id: int | None = None
    repaired_rid_ext_id: int | None = None


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    session: list[str] = []
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    return session, media


def order_rids(rids: list[str]) -> list[str]:
    """Lowest quality first: known naming schemes by meaning, else the offer's order."""
    for known in _KNOWN_ORDERS:
        if set(rids) <= set(known):
            return sorted(rids, key=known.index)
    return list(rids)


def parse_simulcast_offer(sdp: str) -> dict[str, SimulcastOffer]:
    """mid -> SimulcastOffer for each video m-line offering ``a=simulcast:send``.

    Raises ValueError for a malformed simulcast description (a rid listed in
    a=simulcast without its a=rid line, an invalid rid id, more than 4 layers).
    """
    _, media = _sections(sdp)
    offers: dict[str, SimulcastOffer] = {}
    for lines in media:
        if not lines[0].startswith("m=video"):
            continue
        mid = ""
        declared: list[str] = []
        listed: list[str] = []
        paused: set[str] = set()
        ext_ids: dict[str, int] = {}
        for line in lines[1:]:
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) >= 2 and parts[1] == "send":
                    declared.append(parts[0])
            elif line.startswith("a=simulcast:"):
                spec = line[len("a=simulcast:") :].split()
                # "send q;h;f" (optionally followed by "recv ..."): alternatives
                # are separated by "," and only the first of each is used.
                for direction, value in zip(spec[0::2], spec[1::2]):
                    if direction != "send":
                        continue
                    for stream in value.split(";"):
                        first = stream.split(",")[0]
                        rid = first.lstrip("~")
                        if first.startswith("~"):
                            paused.add(rid)
                        listed.append(rid)
            elif line.startswith("a=extmap:"):
                head, _, rest = line[len("a=extmap:") :].partition(" ")
                uri = rest.split()[0] if rest.split() else ""
                try:
                    ext_ids[uri] = int(head.split("/")[0])
                except ValueError:
                    continue
        if not listed:
            continue
        for rid in listed:
            if not _RID_ID.match(rid):
                raise ValueError(f"m-line {mid or '?'}: invalid rid {rid!r}")
            if rid not in declared:
                raise ValueError(f"m-line {mid or '?'}: rid {rid!r} in a=simulcast has no a=rid line")
        if len(set(listed)) != len(listed):
            raise ValueError(f"m-line {mid or '?'}: a=simulcast lists a rid twice")
        if len(listed) > 4:
            raise ValueError(f"m-line {mid or '?'}: at most 4 simulcast layers, got {len(listed)}")
        if EXT_RID not in ext_ids:
            raise ValueError(f"m-line {mid or '?'}: simulcast without the rtp-stream-id extension")
        offers[mid] = SimulcastOffer(
            mid=mid,
            rids=order_rids(listed),
            offer_order=listed,
            paused=paused,
            rid_ext_id=ext_ids.get(EXT_RID),
            repaired_rid_ext_id=ext_ids.get(EXT_REPAIRED_RID),
        )
    return offers


def add_simulcast_to_answer(answer: str, offers: dict[str, SimulcastOffer]) -> str:
    """aiortc's answer with the receive side of each offered simulcast m-line."""
    if not offers:
        return answer
    session, media = _sections(answer)
    out = list(session)
    for lines in media:
        mid = next((line[6:].strip() for line in lines if line.startswith("a=mid:")), "")
        offer = offers.get(mid)
        if offer is None or not lines[0].startswith("m=video"):
            out.extend(lines)
            continue
        extra: list[str] = []
        present = {line for line in lines if line.startswith("a=extmap:")}
        for ext_id, uri in ((offer.rid_ext_id, EXT_RID), (offer.repaired_rid_ext_id, EXT_REPAIRED_RID)):
            line = f"a=extmap:{ext_id} {uri}"
            if ext_id is not None and line not in present:
                extra.append(line)
        # The answer lists the layers as the offer did (RFC 8853 section 5.3).
        in_offer_order = offer.offer_order or offer.rids
        extra += [f"a=rid:{rid} recv" for rid in in_offer_order]
        extra.append("a=simulcast:recv " + ";".join(in_offer_order))
        # Extmaps go with the other extmaps; rid/simulcast lines at the end of the section.
        last_extmap = max((i for i, line in enumerate(lines) if line.startswith("a=extmap:")), default=0)
        ext_lines = [line for line in extra if line.startswith("a=extmap:")]
        rest = [line for line in extra if not line.startswith("a=extmap:")]
        out.extend(lines[: last_extmap + 1] + ext_lines + lines[last_extmap + 1 :] + rest)
    return "\r\n".join(out) + "\r\n"
