// A small WHIP (RFC 9725) / WHEP client: no dependencies, no trickle.
//
//   const session = await publish({ url, token, stream, sources: ["microphone", "camera"] });
//   const session = await view({ url, token, videoSlots: 2, audioSlots: 1 });
//   await session.stop();   // DELETE the resource, then close the peer connection
//
// The offer is sent once ICE gathering is complete (or after `gatherTimeoutMs`,
// with what was gathered by then), so the node needs no PATCH. A refusal throws
// a WhipWhepError carrying the node's problem+json (`detail`, `status`, `code`).

const DEFAULT_GATHER_TIMEOUT_MS = 2000;

export class WhipWhepError extends Error {
  constructor(message, { status = 0, problem = null } = {}) {
    super(message);
    this.name = "WhipWhepError";
    this.status = status;
    this.problem = problem;
    // "urn:edge:problem:forbidden" -> "forbidden"
    this.code = problem && typeof problem.type === "string"
      ? problem.type.split(":").pop() : (status ? `http_${status}` : "network");
  }
}

/** The Error for a non-201 answer, with the problem+json `detail` when there is one. */
async function refusal(response) {
  let problem = null;
  const type = response.headers.get("content-type") || "";
  try {
    if (type.includes("json")) problem = await response.json();
  } catch (_) { /* a body that is not JSON: keep the status */ }
  const detail = (problem && (problem.detail || problem.title)) || response.statusText || "request failed";
  return new WhipWhepError(`${detail} (HTTP ${response.status})`, { status: response.status, problem });
}

/** Resolves when ICE gathering is complete, or after `timeoutMs` (then the caller sends what it has). */
export function waitForIceGathering(pc, timeoutMs = DEFAULT_GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onState);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve(complete);
    };
    const onState = () => { if (pc.iceGatheringState === "complete") done(true); };
    const onCandidate = (ev) => { if (!ev.candidate) done(true); };
    const timer = setTimeout(() => done(false), timeoutMs);
    pc.addEventListener("icegatheringstatechange", onState);
    pc.addEventListener("icecandidate", onCandidate);
  });
}

function absolute(url) {
  return new URL(url, window.location.href).href;
}

function authHeaders(token, extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

/**
 * Offer -> POST -> answer on `pc` (transceivers already added).
 * Returns the session: { pc, location, stop() }.
 */
async function negotiate(pc, url, token, gatherTimeoutMs) {
  const endpoint = absolute(url);
  await pc.setLocalDescription(await pc.createOffer());
  const complete = await waitForIceGathering(pc, gatherTimeoutMs);
  let response;
  try {
    response = await fetch(endpoint, {
      method: "POST",
      headers: authHeaders(token, { "Content-Type": "application/sdp" }),
      body: pc.localDescription.sdp,
      cache: "no-store",
    });
  } catch (err) {
    throw new WhipWhepError(`cannot reach ${endpoint}: ${err.message}`);
  }
  if (response.status !== 201) throw await refusal(response);
  const header = response.headers.get("location");
  if (!header) throw new WhipWhepError("the answer has no Location header", { status: 201 });
  const location = new URL(header, endpoint).href;
  const answer = await response.text();
  let stopped = null;
  const stop = ({ keepalive = false } = {}) => {
    // DELETE first (the node ends the session at once), then close the pc.
    if (!stopped) {
      stopped = fetch(location, { method: "DELETE", headers: authHeaders(token), keepalive })
        .then((r) => r.status, () => 0)
        .finally(() => pc.close());
    }
    return stopped;
  };
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (err) {
    await stop();
    throw new WhipWhepError(`the node's answer was not accepted: ${err.message}`, { status: 201 });
  }
  return { pc, location, stop, gatheringComplete: complete };
}

function isAudioSource(name) {
  return name === "microphone" || name.endsWith("audio");
}

/**
 * Publish `stream` over WHIP. `sources` names the m-lines in order (e.g.
 * ["microphone", "camera"] or ["screen"]); each takes the next unused track of
 * its kind from the stream. Without `sources`: audio tracks, then video tracks.
 */
export async function publish({ url, token, stream, sources, gatherTimeoutMs, iceServers = [] }) {
  const audio = stream.getAudioTracks();
  const video = stream.getVideoTracks();
  const names = sources && sources.length
    ? sources
    : [...audio.map((_, i) => (i ? "screen-audio" : "microphone")), ...video.map((_, i) => (i ? "screen" : "camera"))];
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers });
  const used = { audio: 0, video: 0 };
  const transceivers = [];
  try {
    for (const name of names) {
      const kind = isAudioSource(name) ? "audio" : "video";
      const track = (kind === "audio" ? audio : video)[used[kind]++];
      if (!track) throw new WhipWhepError(`no ${kind} track for source "${name}"`);
      transceivers.push(pc.addTransceiver(track, { direction: "sendonly", streams: [stream] }));
    }
    const target = new URL(absolute(url));
    target.searchParams.set("sources", names.join(","));
    const session = await negotiate(pc, target.href, token, gatherTimeoutMs);
    return { ...session, sources: names, transceivers };
  } catch (err) {
    pc.close();
    throw err;
  }
}

/**
 * Watch over WHEP with `videoSlots` video and `audioSlots` audio m-lines (recvonly).
 * The node fills slots with the room's producers (host camera first, then screen
 * share, then co-hosts) and refills them without renegotiation.
 * Returns { pc, location, stop(), slots: [{ kind, index, transceiver, track, mid }] }.
 */
export async function view({ url, token, videoSlots = 1, audioSlots = 1, gatherTimeoutMs, iceServers = [] }) {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers });
  const slots = [];
  const add = (kind, count) => {
    for (let index = 0; index < count; index++) {
      const transceiver = pc.addTransceiver(kind, { direction: "recvonly" });
      slots.push({ kind, index, transceiver, track: transceiver.receiver.track, mid: null });
    }
  };
  add("video", videoSlots);
  add("audio", audioSlots);
  try {
    const session = await negotiate(pc, url, token, gatherTimeoutMs);
    for (const slot of slots) slot.mid = slot.transceiver.mid;
    return { ...session, slots };
  } catch (err) {
    pc.close();
    throw err;
  }
}

/** GET the session resource: { slots: [{mid, kind, source, participant, producer}], ... }. */
export async function describe(session, token) {
  const response = await fetch(session.location, { headers: authHeaders(token), cache: "no-store" });
  if (!response.ok) throw await refusal(response);
  return response.json();
}
