"""Bad input gets a clear problem+json error and leaves no state behind."""

from __future__ import annotations

import time

import httpx
import pytest

from ..clients import WhepViewer, WhipPublisher
from ..nodeproc import NodeProcess

VALID_LOOKING_OFFER = """v=0\r
o=- 1 1 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
m=video 9 UDP/TLS/RTP/SAVPF 96\r
c=IN IP4 0.0.0.0\r
a=mid:0\r
a=sendonly\r
a=rtcp-mux\r
a=ice-ufrag:abcd\r
a=ice-pwd:abcdefghijklmnopqrstuvwx\r
a=fingerprint:sha-256 {fp}\r
a=setup:actpass\r
a=rtpmap:96 {codec}/90000\r
"""
FINGERPRINT = ":".join(["AB"] * 32)


def post(node: NodeProcess, path: str, body: bytes | str, token: str | None, content_type: str = "application/sdp") -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(node.url + path, content=body, headers=headers, timeout=10)


def assert_problem(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert body["type"].endswith(code)
    assert body["detail"]
    return body


def assert_no_state(node: NodeProcess, room: str) -> None:
    assert node.room(room) is None
    listed = httpx.get(node.url + "/v1/rooms", headers=node.admin_headers()).json()["rooms"]
    assert room not in [r["name"] for r in listed]


@pytest.mark.parametrize(
    "body",
    [
        "this is not sdp",
        "v=0\r\nm=video notaport RTP/AVP 96\r\n",
        VALID_LOOKING_OFFER.format(fp=FINGERPRINT, codec="VP8").replace("a=fingerprint", "a=nofingerprint"),
        VALID_LOOKING_OFFER.format(fp=FINGERPRINT, codec="VP8").replace("a=ice-ufrag:abcd\r\n", ""),
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",  # no media at all
        VALID_LOOKING_OFFER.format(fp=FINGERPRINT, codec="VP8")
        + "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
        + "a=rid:q send\r\na=simulcast:send q;h\r\n",  # layer h has no a=rid
    ],
    ids=["garbage", "broken-m-line", "no-fingerprint", "no-ice-ufrag", "no-media", "bad-simulcast"],
)
def test_malformed_sdp_is_400_and_leaves_no_room(node: NodeProcess, body: str) -> None:
    room = "bad-sdp"
    r = post(node, f"/whip/{room}", body, node.token(room, "h", "host"))
    assert_problem(r, 400, "malformed_sdp")
    assert_no_state(node, room)


def test_no_common_codec_is_406_naming_codecs(node: NodeProcess) -> None:
    room = "bad-codec"
    offer = VALID_LOOKING_OFFER.format(fp=FINGERPRINT, codec="AV1X")
    r = post(node, f"/whip/{room}", offer, node.token(room, "h", "host"))
    body = assert_problem(r, 406, "no_common_codec")
    assert "video/VP8" in body["supported_codecs"] and "audio/opus" in body["supported_codecs"]
    assert "AV1X" in body["detail"]
    assert_no_state(node, room)


def test_wrong_content_type_is_415(node: NodeProcess) -> None:
    r = post(node, "/whip/ct", "v=0", node.token("ct", "h", "host"), content_type="application/json")
    assert_problem(r, 415, "unsupported_media_type")
    assert r.headers["accept-post"] == "application/sdp"
    assert_no_state(node, "ct")


@pytest.mark.parametrize(
    "token",
    [None, "garbage", "Bearer", "expired", "other-secret"],
)
def test_missing_invalid_or_expired_token_is_401(node: NodeProcess, token: str | None) -> None:
    from edge.auth import TokenAuthority

    if token == "expired":
        token = node.authority.issue(room="auth", identity="h", role="host", now=time.time() - 7200, ttl_seconds=60)
    elif token == "other-secret":
        token = TokenAuthority("x" * 32).issue(room="auth", identity="h", role="host")
    r = post(node, "/whip/auth", "v=0", token)
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_no_state(node, "auth")


def test_wrong_role_or_room_is_403(node: NodeProcess) -> None:
    r = post(node, "/whip/roles", "v=0", node.token("roles", "v", "viewer"))
    assert_problem(r, 403, "forbidden")
    r = post(node, "/whip/roles", "v=0", node.token("another-room", "h", "host"))
    assert_problem(r, 403, "forbidden")
    r = httpx.get(node.url + "/v1/rooms", headers={"Authorization": "Bearer " + node.token("*", "h", "host")})
    assert_problem(r, 403, "forbidden")
    r = httpx.get(node.url + "/metrics", headers={"Authorization": "Bearer " + node.token("*", "v", "viewer")})
    assert_problem(r, 403, "forbidden")
    assert_no_state(node, "roles")


def test_body_over_cap_is_413(node: NodeProcess) -> None:
    r = post(node, "/whip/big", "v=0\r\n" + "a=x\r\n" * 20000, node.token("big", "h", "host"))
    assert_problem(r, 413, "body_too_large")

    # Without Content-Length (chunked), the cap still holds.
    def chunks():
        for _ in range(100):
            yield b"a" * 1024

    r = httpx.post(
        node.url + "/whip/big",
        content=chunks(),
        headers={"Content-Type": "application/sdp", "Authorization": "Bearer " + node.token("big", "h", "host")},
    )
    assert_problem(r, 413, "body_too_large")
    assert_no_state(node, "big")


def test_invalid_room_name_is_400(node: NodeProcess) -> None:
    r = post(node, "/whip/" + "x" * 100, "v=0", node.token("*", "h", "host"))
    assert_problem(r, 400, "invalid_room")


def test_unknown_session_and_foreign_session(node: NodeProcess) -> None:
    r = httpx.delete(node.url + "/whip/r/nosuchsession", headers={"Authorization": "Bearer " + node.token("r", "h", "host")})
    assert_problem(r, 404, "not_found")


async def test_other_participant_cannot_delete_or_patch_a_session(node: NodeProcess) -> None:
    room = "foreign"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    intruder = {"Authorization": "Bearer " + node.token(room, "mallory", "host")}
    async with httpx.AsyncClient() as client:
        r = await client.delete(node.url + pub.location, headers=intruder)
        assert_problem(r, 403, "forbidden")
        r = await client.patch(
            node.url + pub.location,
            content="a=ice-ufrag:zzzz\r\n",
            headers={**intruder, "Content-Type": "application/trickle-ice-sdpfrag"},
        )
        assert_problem(r, 403, "forbidden")
    assert node.room(room) is not None
    await pub.stop()


async def test_trickle_patch_and_ice_restart_refusal(node: NodeProcess) -> None:
    room = "trickle"
    viewer = WhepViewer(node.url, room, node.token(room, "fan", "viewer"))
    assert (await viewer.start()).status_code == 201
    auth = {"Authorization": "Bearer " + viewer.token}
    async with httpx.AsyncClient() as client:
        ufrag = next(
            line.split(":", 1)[1] for line in viewer.pc.localDescription.sdp.splitlines() if line.startswith("a=ice-ufrag:")
        )
        frag = f"a=ice-ufrag:{ufrag}\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
        r = await client.patch(node.url + viewer.location, content=frag, headers={**auth, "Content-Type": "application/trickle-ice-sdpfrag"})
        assert r.status_code == 204, r.text
        r = await client.patch(node.url + viewer.location, content=frag, headers={**auth, "Content-Type": "text/plain"})
        assert_problem(r, 415, "unsupported_media_type")
        restart = "a=ice-ufrag:newufrag\r\na=ice-pwd:newpasswordnewpassword12\r\n"
        r = await client.patch(node.url + viewer.location, content=restart, headers={**auth, "Content-Type": "application/trickle-ice-sdpfrag"})
        assert_problem(r, 422, "ice_restart_unsupported")
        bad = f"a=ice-ufrag:{ufrag}\r\na=candidate:garbage\r\n"
        r = await client.patch(node.url + viewer.location, content=bad, headers={**auth, "Content-Type": "application/trickle-ice-sdpfrag"})
        assert_problem(r, 400, "malformed_sdpfrag")
    # The session survived all of it.
    assert viewer.pc.connectionState == "connected"
    await viewer.stop()


def test_options_and_cors_preflight(node: NodeProcess) -> None:
    r = httpx.options(node.url + "/whip/cors")
    assert r.status_code == 204 and r.headers["accept-post"] == "application/sdp"
    r = httpx.options(
        node.url + "/whep/cors",
        headers={
            "Origin": "http://127.0.0.1:9999",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 200
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
