// Shared helpers of the e2e pages (plain ES module, served as /common.js).
//
// Query string of both pages:
//   node  = the node's base URL, e.g. http://127.0.0.1:8123 (another origin: CORS)
//   room  = room name
//   token = bearer token (role host for pub.html, viewer for view.html)
// whip-whep needs an ABSOLUTE endpoint URL: it does new URL(Location, url).

export function params() {
  const q = new URLSearchParams(location.search);
  const node = q.get("node");
  const room = q.get("room");
  const token = q.get("token");
  if (!node || !room || !token) throw new Error("query string needs node, room and token");
  return { node, room, token, simulcast: q.get("simulcast") === "1" };
}

export function endpoint(kind, node, room) {
  return new URL(`/${kind}/${encodeURIComponent(room)}`, node).href;
}

// Wrap the global fetch (whip-whep calls it) to timestamp and log every request.
// state.requests: [{method, url, status, t0, t1}], times are performance.now() ms.
// hooks.onStart(entry) runs just before the request leaves, hooks.onDone(entry, response)
// when its response headers are in.
export function recordFetch(state, hooks = {}) {
  const orig = window.fetch.bind(window);
  state.requests = [];
  window.fetch = async (input, init = {}) => {
    const entry = {
      method: (init.method || "GET").toUpperCase(),
      url: String(input),
      t0: performance.now(),
    };
    state.requests.push(entry);
    if (hooks.onStart) hooks.onStart(entry);
    try {
      const response = await orig(input, init);
      entry.status = response.status;
      entry.t1 = performance.now();
      if (hooks.onDone) hooks.onDone(entry, response);
      return response;
    } catch (e) {
      entry.error = String(e);
      entry.t1 = performance.now();
      throw e;
    }
  };
}

// Follow a peer connection's states into `state` (whip-whep assigns
// pc.onconnectionstatechange / pc.onicecandidate itself: only addEventListener here).
export function watchPeer(pc, state) {
  state.connectionState = pc.connectionState;
  state.iceConnectionState = pc.iceConnectionState;
  state.localCandidates = [];
  pc.addEventListener("connectionstatechange", () => {
    state.connectionState = pc.connectionState;
    state.t["pc_" + pc.connectionState] = performance.now();
  });
  pc.addEventListener("iceconnectionstatechange", () => {
    state.iceConnectionState = pc.iceConnectionState;
  });
  pc.addEventListener("icecandidate", (e) => {
    if (e.candidate) state.localCandidates.push(e.candidate.candidate);
  });
}

// "local-type addr:port -> remote-type addr:port" of the selected ICE pair, or null.
export function selectedPair(stats) {
  let out = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) {
      const p = stats.get(r.selectedCandidatePairId);
      const l = p && stats.get(p.localCandidateId);
      const rm = p && stats.get(p.remoteCandidateId);
      if (l && rm)
        out = `${l.candidateType} ${l.address}:${l.port} -> ${rm.candidateType} ${rm.address}:${rm.port}`;
    }
  });
  return out;
}
