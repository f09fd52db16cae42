"""WebRTC transport: aiortc for SDP, ICE and DTLS only.

This is the one module that touches aiortc/aioice private APIs (pinned:
aiortc==1.16.0, aioice==0.13.0, pylibsrtp==1.0.0; tests/unit/test_webrtc_glue.py
fails loudly when an upgrade moves any of them). What it does with them:

* ``EdgePeerConnection`` overrides the name-mangled transceiver factory so that
  every RTCRtpReceiver/RTCRtpSender it creates is never started: no decoder
  thread, no encoder, no 20 ms polling sender task, no bogus SR/BYE.
* The DTLS transport's ``_handle_rtp_data`` / ``_handle_rtcp_data`` are replaced
  on the instance: decrypted RTP/RTCP bytes come to the node untouched, with
  every header extension intact.
* Egress is protected with the DTLS transport's own outbound SRTP session
  (``_tx_srtp``; nothing else sends RTP/RTCP on it since the senders never run)
  and written with a plain ``sendto`` on the nominated ICE pair's socket.
* ``_rx_srtp`` is wrapped to count datagrams that fail SRTP authentication;
  with a native data plane (``srtp_receiver_factory`` set) the session it wraps
  is the native SrtpReceiver built from ``srtp_keys()["rx"]`` instead of
  aiortc's pylibsrtp one (same bytes, same refusals, errors raised as
  pylibsrtp.Error subclasses so aiortc's receive loop drops them as before).
* With a ``UdpMux`` (edge/transport/udpmux.py, the node's one UDP port), the
  overridden ``_RTCPeerConnection__createDtlsTransport`` hands the new aioice
  ``Connection`` to the mux before anything is gathered, so its only host
  candidate is the mux's address:port and its "socket" is the shared one.

See shared/research/aiortc_sfu.md for the hook points and their measured cost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aioice.ice
import pylibsrtp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
    rtcrtpreceiver,
    rtcrtpsender,
)
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import is_codec_compatible  # noqa: F401  (pinned API probe)
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)
from aiortc.sdp import SessionDescription, candidate_from_sdp

from ..errors import InvalidStateError, NegotiationError
from .simulcast_sdp import (
    EXT_REPAIRED_RID,
    EXT_RID,
    SimulcastOffer,
    add_simulcast_to_answer,
    parse_simulcast_offer,
)
from .udpmux import UdpMux

EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
# Lets a sender set the receiver's playout delay (min/max, 10 ms units): the
# node raises a lossy viewer's minimum so NACK repairs land before playout.
EXT_PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
EXT_TRANSPORT_CC = (
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
)


def supported_codecs() -> list[str]:
    """Codecs the node can forward, as ``audio/opus``-style names (for 406 answers)."""
    names: list[str] = []
    for kind in ("audio", "video"):
        for codec in CODECS[kind]:
            name = codec.mimeType
            if name.lower().endswith("/rtx") or name in names:
                continue
            names.append(name)
    return names


# --- process-wide installation -------------------------------------------------

_ice_addresses: list[str] | None = None
_original_get_host_addresses = aioice.ice.get_host_addresses


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _ice_addresses is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [a for a in _ice_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def install_ice_addresses(addresses: list[str] | None) -> None:
    """Gather ICE host candidates only on these addresses (None = aioice's default).

    aioice skips 127.0.0.1, so a loopback-only node needs this to be reachable.
    """
    global _ice_addresses
    _ice_addresses = list(addresses) if addresses else None
    aioice.ice.get_host_addresses = _configured_host_addresses


def install_opus_fec() -> None:
    """Answer Opus with ``useinbandfec=1`` (and ``minptime=10``).

    aiortc answers with its own codec parameters, which for Opus are empty; a
    browser publisher then never adds Opus in-band FEC, the redundancy that
    lets a viewer's decoder rebuild a lost 20 ms frame from the next packet.
    The node forwards Opus payloads untouched, so FEC sent is FEC delivered.
    """
    for codec in CODECS["audio"]:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters.update({"minptime": 10, "useinbandfec": 1})


def install_codec_tripwire(on_codec: Callable[[str], None]) -> None:
    """Report every decoder/encoder aiortc would create in this process.

    The node never transcodes; the tripwire turns an accidental decode into a
    metric (edge_codec_instances) and an exception instead of silent CPU burn.
    """
    original_decoder = rtcrtpreceiver.get_decoder
    original_encoder = rtcrtpsender.get_encoder

    def get_decoder(codec: Any) -> Any:
        on_codec("decoder")
        raise RuntimeError(f"edge never decodes media (asked for a {codec.mimeType} decoder)")

    def get_encoder(codec: Any) -> Any:
        on_codec("encoder")
        raise RuntimeError(f"edge never encodes media (asked for a {codec.mimeType} encoder)")

    get_decoder.original = original_decoder  # type: ignore[attr-defined]
    get_encoder.original = original_encoder  # type: ignore[attr-defined]
    rtcrtpreceiver.get_decoder = get_decoder
    rtcrtpsender.get_encoder = get_encoder


# --- negotiated facts -----------------------------------------------------------


@dataclass(slots=True)
class CodecInfo:
    name: str  # lower-case MIME subtype: "opus", "vp8", "h264"
    payload_type: int
    clock_rate: int
    channels: int | None
    parameters: dict[str, Any]
    rtx_payload_type: int | None = None
    feedback: frozenset[str] = frozenset()

    @property
    def mime_type(self) -> str:
        return self.name


@dataclass(slots=True)
class MediaSection:
    """One negotiated m-line, as the node sees it."""

    mid: str
    kind: str  # "audio" | "video"
    index: int
    codecs: list[CodecInfo]
    extensions: dict[str, int]  # URI -> negotiated id
    local_ssrc: int  # the SSRC the node announced (used when sending)
    remote_ssrcs: list[int] = field(default_factory=list)  # announced by the peer
    remote_rtx: dict[int, int] = field(default_factory=dict)  # rtx ssrc -> media ssrc
    msid: str = ""
    # Simulcast layers the peer sends on this m-line (rids, lowest quality
    # first); empty for a single stream. See simulcast_sdp.py.
    rids: list[str] = field(default_factory=list)
    # The RTX SSRC the node announced for this m-line (a=ssrc-group:FID), when
    # the peer negotiated rtx: where repairs towards it go (edge/media/rtx.py).
    local_rtx_ssrc: int | None = None

    def codec_by_pt(self, payload_type: int) -> CodecInfo | None:
        for c in self.codecs:
            if c.payload_type == payload_type:
                return c
        return None


def _codec_infos(codecs: list[RTCRtpCodecParameters]) -> list[CodecInfo]:
    infos: list[CodecInfo] = []
    rtx: dict[int, int] = {}
    for c in codecs:
        subtype = c.mimeType.split("/", 1)[1].lower()
        if subtype == "rtx":
            apt = c.parameters.get("apt")
            if isinstance(apt, int):
                rtx[apt] = c.payloadType
            continue
        infos.append(
            CodecInfo(
                name=subtype,
                payload_type=c.payloadType,
                clock_rate=c.clockRate,
                channels=c.channels,
                parameters=dict(c.parameters),
                feedback=frozenset(
                    f"{fb.type} {fb.parameter}" if fb.parameter else fb.type
                    for fb in c.rtcpFeedback
                ),
            )
        )
    for info in infos:
        info.rtx_payload_type = rtx.get(info.payload_type)
    return infos


# --- aiortc glue ----------------------------------------------------------------


def _accept_red(transceiver: Any, offered: Any, first: bool = False) -> None:
    """Add the offered ``red/48000/2`` (RFC 2198 over Opus) to an audio transceiver's
    negotiated codecs, right after Opus; aiortc itself knows no RED. ``first``:
    before Opus, which makes a browser *send* RED (a publisher's answer)."""
    codecs = transceiver._codecs
    opus = next((c for c in codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is None or any(c.mimeType.lower() == "audio/red" for c in codecs):
        return
    for c in offered.rtp.codecs:
        if c.mimeType.lower() == "audio/red" and c.clockRate == 48000:
            red = RTCRtpCodecParameters(
                mimeType="audio/red",
                clockRate=48000,
                channels=2,
                payloadType=c.payloadType,
                parameters={f"{opus.payloadType}/{opus.payloadType}": None},
            )
            codecs.insert(0 if first else codecs.index(opus) + 1, red)
            return


def _accept_extension(transceiver: Any, offered: Any, uri: str) -> None:
    """Answer a header extension aiortc does not know, with the offer's id."""
    if any(e.uri == uri for e in transceiver._headerExtensions):
        return
    for e in offered.rtp.headerExtensions:
        if e.uri == uri:
            transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=e.id, uri=uri))
            return


def _accept_transport_cc(transceiver: Any, offered: Any) -> None:
    """Answer transport-wide congestion control (the header extension and
    ``a=rtcp-fb:<pt> transport-cc``) where the offer has it; aiortc knows neither.
    The viewer then sends TWCC feedback (edge/media/twcc.py) instead of REMB."""
    if not any(e.uri == EXT_TRANSPORT_CC for e in offered.rtp.headerExtensions):
        return
    _accept_extension(transceiver, offered, EXT_TRANSPORT_CC)
    wanted = {
        c.payloadType
        for c in offered.rtp.codecs
        if any(fb.type == "transport-cc" for fb in c.rtcpFeedback)
    }
    for codec in transceiver._codecs:  # aiortc's per-transceiver deep copies
        if codec.payloadType in wanted and not any(fb.type == "transport-cc" for fb in codec.rtcpFeedback):
            codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


async def _never_start(*_args: Any, **_kwargs: Any) -> None:
    """Replaces RTCRtpSender.send / RTCRtpReceiver.receive: the node moves RTP itself."""


class EdgePeerConnection(RTCPeerConnection):
    """An RTCPeerConnection whose RTP senders/receivers never run.

    With ``udp_mux``, its ICE gathers on the node's shared UDP port only.
    """

    def __init__(self, configuration: RTCConfiguration | None = None, udp_mux: UdpMux | None = None) -> None:
        self._udp_mux = udp_mux
        super().__init__(configuration)

    def _RTCPeerConnection__createDtlsTransport(self) -> Any:  # noqa: N802  (mangled name override)
        create = RTCPeerConnection._RTCPeerConnection__createDtlsTransport  # type: ignore[attr-defined]
        dtls = create(self)
        if self._udp_mux is not None:
            self._udp_mux.adopt(dtls.transport._connection)
        return dtls

    def _RTCPeerConnection__createTransceiver(  # noqa: N802  (mangled name override)
        self, direction: str, kind: str, sender_track: Any = None
    ) -> RTCRtpTransceiver:
        create = RTCPeerConnection._RTCPeerConnection__createTransceiver  # type: ignore[attr-defined]
        transceiver: RTCRtpTransceiver = create(self, direction, kind, sender_track)
        transceiver.sender.send = _never_start  # type: ignore[method-assign]
        transceiver.receiver.receive = _never_start  # type: ignore[method-assign]
        return transceiver


class _CountingSrtp:
    """Wraps the inbound SRTP session to count what fails authentication.

    ``session`` is aiortc's pylibsrtp Session or a native SrtpReceiver; both
    raise pylibsrtp.Error (the native SrtpError subclasses it).
    """

    __slots__ = ("_session", "_on_error")

    def __init__(self, session: Any, on_error: Callable[[str], None]) -> None:
        self._session = session
        self._on_error = on_error

    def unprotect(self, data: bytes) -> bytes:
        try:
            return self._session.unprotect(data)
        except pylibsrtp.Error:
            self._on_error("srtp")
            raise

    def unprotect_rtcp(self, data: bytes) -> bytes:
        try:
            return self._session.unprotect_rtcp(data)
        except pylibsrtp.Error:
            self._on_error("srtcp")
            raise


RtpHandler = Callable[[bytes, int], None]
# (libsrtp profile number, rx master key + salt) -> an inbound SRTP session
# with pylibsrtp.Session's unprotect / unprotect_rtcp.
SrtpReceiverFactory = Callable[[int, bytes], Any]
RtcpHandler = Callable[[bytes], None]


class WebRtcTransport:
    """One WebRTC peer: SDP negotiation, ICE/DTLS, and raw SRTP in and out.

    ``on_rtp(data, arrival_ms)`` and ``on_rtcp(data)`` get decrypted bytes;
    ``send_rtp`` / ``send_rtcp`` protect and send. Packet handlers are plain
    functions (no await on the media path).
    """

    def __init__(self, transport_id: str, udp_mux: UdpMux | None = None) -> None:
        self.id = transport_id
        # max-bundle: WHIP/WHEP require BUNDLE, and one DTLS transport per peer
        # is what the data plane hooks (aiortc's "balanced" may split m-lines).
        self.pc = EdgePeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE),
            udp_mux=udp_mux,
        )
        self.sections: list[MediaSection] = []
        self.created_at = time.monotonic()
        self.last_rx = self.created_at
        self.connected = asyncio.Event()
        self.closed = False
        self.on_rtp: RtpHandler = lambda data, arrival: None
        self.on_rtcp: RtcpHandler = lambda data: None
        self.on_state: Callable[[str], Awaitable[None] | None] = lambda state: None
        self.on_drop: Callable[[str], None] = lambda reason: None
        self.on_datachannel: Callable[[Any], None] = lambda channel: None
        # Set before connecting to unprotect ingress natively (see _take_over_media).
        self.srtp_receiver_factory: SrtpReceiverFactory | None = None
        self.srtp_receiver: Any = None  # the native receiver in use, if any
        self._tx: pylibsrtp.Session | None = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._remote_addr: Any = None
        self._ufrag: str = ""
        self.pc.on("connectionstatechange", self._connection_state_changed)
        self.pc.on("datachannel", lambda channel: self.on_datachannel(channel))

    # negotiation -----------------------------------------------------------

    @property
    def state(self) -> str:
        return self.pc.connectionState

    @property
    def data_channel_offered(self) -> bool:
        return any(m.kind == "application" for m in self._remote_sdp().media)

    async def answer(
        self,
        offer_sdp: str,
        *,
        send: bool,
        audio_red: bool = False,
        playout_delay: bool = False,
        transport_cc: bool = False,
        publisher_red: bool = False,
    ) -> str:
        """Answer an offer. ``send`` = the node sends media (WHEP), else receives (WHIP).

        For WHIP, ``publisher_red`` answers an offered ``red/48000/2`` first, so
        that a browser sends its audio as RED (edge/media/red_receive.py).

        For WHEP, ``audio_red`` accepts an offered ``red/48000/2`` over Opus
        (edge/media/red.py) and ``playout_delay`` the playout-delay extension
        on video (edge/media/playout.py), when the viewer offers them;
        ``transport_cc`` accepts transport-wide congestion control (edge/media/twcc.py).
        """
        try:
            parsed = SessionDescription.parse(offer_sdp)
        except Exception as exc:  # aiortc's parser raises assorted errors
            raise NegotiationError(f"malformed SDP offer: {exc or type(exc).__name__}") from None
        media = [m for m in parsed.media if m.kind in ("audio", "video")]
        if not media:
            raise NegotiationError("the SDP offer has no audio or video m-line")
        for m in parsed.media:
            if not m.ice.usernameFragment or not m.ice.password:
                raise NegotiationError(f"m-line {m.kind} has no a=ice-ufrag/a=ice-pwd")
            if not m.dtls or not m.dtls.fingerprints:
                raise NegotiationError(f"m-line {m.kind} has no a=fingerprint")
        wrong = [m.direction for m in media if m.direction not in (
            ("recvonly", "sendrecv") if send else ("sendonly", "sendrecv"))]
        if wrong:
            need = "recvonly" if send else "sendonly"
            raise NegotiationError(f"m-lines must be {need} here, got {', '.join(wrong)}")
        simulcast: dict[str, SimulcastOffer] = {}
        if not send:
            try:
                simulcast = parse_simulcast_offer(offer_sdp)
            except ValueError as exc:
                raise NegotiationError(f"bad simulcast offer: {exc}") from None
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if "send parameters" in message or "receive parameters" in message or "codec" in message.lower():
                offered = sorted({c.mimeType for m in parsed.media for c in m.rtp.codecs})
                raise NegotiationError(
                    f"no common codec: offered {', '.join(offered) or 'none'}; "
                    f"this node forwards {', '.join(supported_codecs())}",
                    status=406,
                    supported=supported_codecs(),
                ) from None
            raise NegotiationError(f"cannot apply the SDP offer: {message}") from None
        for t in self.pc.getTransceivers():
            t.direction = "sendonly" if send else "recvonly"
            if not send and publisher_red and t.kind == "audio":
                _accept_red(t, parsed.media[t._get_mline_index()], first=True)
            if send:
                offered = parsed.media[t._get_mline_index()]
                if audio_red and t.kind == "audio":
                    _accept_red(t, offered)
                if playout_delay and t.kind == "video":
                    _accept_extension(t, offered, EXT_PLAYOUT_DELAY)
                if transport_cc:
                    _accept_transport_cc(t, offered)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.sections = self._collect_sections(simulcast)
        self._ufrag = parsed.media[0].ice.usernameFragment or ""
        return add_simulcast_to_answer(self.pc.localDescription.sdp, simulcast)

    def _remote_sdp(self) -> SessionDescription:
        return SessionDescription.parse(self.pc.remoteDescription.sdp)

    def _collect_sections(self, simulcast: dict[str, SimulcastOffer]) -> list[MediaSection]:
        remote = self._remote_sdp()
        sections: list[MediaSection] = []
        for t in self.pc.getTransceivers():
            index = t._get_mline_index()
            rmedia = remote.media[index]
            ssrcs = [s.ssrc for s in rmedia.ssrc]
            rtx: dict[int, int] = {}
            for group in rmedia.ssrc_group:
                if group.semantic == "FID" and len(group.items) == 2:
                    rtx[int(group.items[1])] = int(group.items[0])
            media_ssrcs = [s for s in dict.fromkeys(ssrcs) if s not in rtx]
            extensions = {e.uri: e.id for e in t._headerExtensions}
            layers = simulcast.get(t.mid or "")
            if layers is not None and t.kind == "video":
                if layers.rid_ext_id is not None:
                    extensions[EXT_RID] = layers.rid_ext_id
                if layers.repaired_rid_ext_id is not None:
                    extensions[EXT_REPAIRED_RID] = layers.repaired_rid_ext_id
                # Layers are told apart by rid: SSRCs announced for them are
                # learnt again from the packets (the rid extension says which).
                media_ssrcs = []
            sections.append(
                MediaSection(
                    mid=t.mid or str(index),
                    kind=t.kind,
                    index=index,
                    codecs=_codec_infos(t._codecs),
                    extensions=extensions,
                    local_ssrc=t.sender._ssrc,
                    remote_ssrcs=media_ssrcs,
                    remote_rtx={} if layers is not None else rtx,
                    msid=rmedia.msid or "",
                    rids=list(layers.rids) if layers is not None and t.kind == "video" else [],
                    local_rtx_ssrc=(
                        t.sender._rtx_ssrc
                        if any(c.mimeType.lower().endswith("/rtx") for c in t._codecs)
                        else None
                    ),
                )
            )
        return sections

    async def add_ice_fragment(self, fragment: str) -> bool:
        """Apply a trickle-ICE sdpfrag. Returns False for an ICE restart (not supported)."""
        ufrag = ""
        candidates = []
        for line in fragment.splitlines():
            line = line.strip()
            if line.startswith("a=ice-ufrag:"):
                ufrag = line.split(":", 1)[1]
            elif line.startswith("a=candidate:"):
                try:
                    candidates.append(candidate_from_sdp(line[2:].split(":", 1)[1]))
                except Exception:
                    raise NegotiationError(f"malformed candidate line: {line[:120]}") from None
        if ufrag and self._ufrag and ufrag != self._ufrag:
            return False
        mid = self.sections[0].mid if self.sections else "0"
        for candidate in candidates:
            candidate.sdpMid = mid
        if candidates:
            # addIceCandidate may spend a second resolving an mDNS name: never in
            # the HTTP handler.
            asyncio.ensure_future(self._add_candidates(candidates))
        return True

    async def _add_candidates(self, candidates: list[Any]) -> None:
        for candidate in candidates:
            try:
                await self.pc.addIceCandidate(candidate)
            except Exception:  # a bad or unresolvable candidate only loses itself
                self.on_drop("ice_candidate")

    # connection ------------------------------------------------------------

    async def _connection_state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected.is_set():
            self._take_over_media()
            self.connected.set()
        result = self.on_state(state)
        if asyncio.iscoroutine(result):
            await result

    def _dtls(self) -> Any:
        return self.pc.getTransceivers()[0].receiver.transport

    def _take_over_media(self) -> None:
        dtls = self._dtls()
        dtls._handle_rtp_data = self._rtp_in
        dtls._handle_rtcp_data = self._rtcp_in
        rx = dtls._rx_srtp
        if self.srtp_receiver_factory is not None:
            # From here on the native receiver owns the inbound replay state; the
            # few packets aiortc's session took between the DTLS handshake and
            # "connected" went to receivers that never run.
            keys = self.srtp_rx_keys()
            rx = self.srtp_receiver = self.srtp_receiver_factory(keys[0], keys[1])
        dtls._rx_srtp = _CountingSrtp(rx, self.on_drop)
        self._tx = dtls._tx_srtp
        self._refresh_route()

    def _refresh_route(self) -> None:
        connection = self._dtls().transport._connection
        pair = connection._nominated.get(1)
        if pair is None:
            raise InvalidStateError("ICE has no nominated pair")
        self._sendto = pair.protocol.transport.sendto
        self._remote_addr = pair.remote_addr

    async def _rtp_in(self, data: bytes, arrival_time_ms: int) -> None:
        self.last_rx = time.monotonic()
        self.on_rtp(data, arrival_time_ms)

    async def _rtcp_in(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.on_rtcp(data)

    @property
    def remote_address(self) -> Any:
        return self._remote_addr

    @property
    def local_port(self) -> int | None:
        connection = self._dtls().transport._connection
        pair = connection._nominated.get(1)
        return pair.local_candidate.port if pair else None

    # egress (called by the data plane) ---------------------------------------

    def protect_rtp(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)  # type: ignore[union-attr]

    def send_protected(self, data: bytes) -> None:
        if self._sendto is not None and not self.closed:
            self._sendto(data, self._remote_addr)

    def send_rtcp(self, packet: bytes) -> None:
        if self._tx is None or self.closed:
            return
        self._sendto(self._tx.protect_rtcp(packet), self._remote_addr)  # type: ignore[misc]

    def srtp_keys(self) -> dict[str, Any]:
        """Keying material for a native data plane (profile, role, exported keys)."""
        from aiortc.rtcdtlstransport import SRTP_PROFILES

        dtls = self._dtls()
        selected = dtls._ssl.get_selected_srtp_profile()
        profile = next(p for p in SRTP_PROFILES if p.openssl_profile == selected)
        material = dtls._ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
        )
        server = dtls._role == "server"
        return {
            "profile": profile.libsrtp_profile,
            "tx": profile.get_key_and_salt(material, 1 if server else 0),
            "rx": profile.get_key_and_salt(material, 0 if server else 1),
        }

    def srtp_rx_keys(self) -> tuple[int, bytes]:
        """(libsrtp profile number, inbound master key + salt) for a native receiver."""
        keys = self.srtp_keys()
        return int(keys["profile"]), bytes(keys["rx"])

    def egress_route(self) -> tuple[int, Any]:
        """For a native sender: (socket fd, remote address) of the nominated ICE pair.

        The same socket and address ``send_protected`` uses: the node's shared
        UDP mux socket, or the peer's own aioice socket without the mux. The fd
        is not the caller's: a native sender that keeps it must dup() it
        (closing the transport closes aioice's own socket).
        """
        if self.closed:
            raise InvalidStateError("the transport is closed")
        connection = self._dtls().transport._connection
        pair = connection._nominated.get(1)
        if pair is None:
            raise InvalidStateError("ICE has no nominated pair")
        sock = pair.protocol.transport.get_extra_info("socket")
        return sock.fileno(), pair.remote_addr

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._sendto = None
        await self.pc.close()
