// Host console: camera/mic preview, Go live (WHIP), screen share (a second WHIP
// session), chat with moderation, live viewer and like counters, the products
// card (pin, countdown, unpin, add, the room's numbers: commerce.js), polls and
// draws (engage.js), links to the replay page and the after-sales console.
//
// window.edgeState (for tests and curious operators):
//   phase            "token" | "preview" | "publishing" | "live" | "stopped" | "error"
//   connectionState  the camera+mic peer connection's
//   framesEncoded    outbound camera video (getStats)
//   screen           { phase, connectionState, framesEncoded }
//   likes, viewers   from likes.updated / presence
//   keywords, muted  moderation state
//   chat             { state, messages: [{id, identity, role, text, ts}], errors, system, ... }
//   commerce         {available, currency}; products [product]; pinned (product.pinned data) | null;
//   stats            GET .../stats
//   segments         {available}; polls {poll_id: {...}}; draws {draw_id: {..., verified}}

import { publish } from "./webrtc.js";
import { ChatClient, ChatPanel } from "./chat.js";
import { CommerceConsole } from "./commerce.js";
import { HostEngage } from "./engage.js";
import {
  $, api, el, askToken, formatCount, formatTime, pollStats, storeToken, takeToken, tokenClaims, tokenWarning, toast,
} from "./ui.js";

const HOST_ROLES = ["host", "cohost"];
const room = document.body.dataset.room;
const S = window.edgeState = {
  page: "host", room, phase: "init", error: null, connectionState: "new", framesEncoded: 0,
  screen: { phase: "off", connectionState: "new", framesEncoded: 0 },
  likes: 0, viewers: 0, keywords: [], muted: {}, chat: {},
};

const ui = {
  badge: $("#live-badge"), goLive: $("#go-live"), mic: $("#toggle-mic"), cam: $("#toggle-cam"),
  share: $("#share-screen"), preview: $("#preview"), screenPreview: $("#screen-preview"),
  empty: $("#preview-empty"), status: $("#media-status"), likes: $("#like-count"), viewers: $("#viewer-count"),
  slowmode: $("#slowmode"), keywordForm: $("#keyword-form"), keywordInput: $("#keyword-input"),
  keywords: $("#keywords"), muted: $("#muted"),
};

let token = "";
let camera = null;        // MediaStream (camera + mic)
let live = null;          // WHIP session of camera + mic
let screen = null;        // { stream, session }
let stopStats = null;

function setBadge(state, text) {
  ui.badge.dataset.state = state;
  ui.badge.textContent = text;
}

function setPhase(phase, error = null) {
  S.phase = phase;
  S.error = error;
  document.body.dataset.phase = phase;
  ui.goLive.textContent = phase === "live" || phase === "publishing" ? "End live" : "Go live";
  ui.goLive.classList.toggle("danger", phase === "live" || phase === "publishing");
  ui.goLive.disabled = phase === "publishing" || !camera;
  if (phase === "live") setBadge("live", "LIVE");
  else if (phase === "publishing") setBadge("connecting", "Connecting…");
  else if (phase === "error") setBadge("error", "Error");
  else setBadge("offline", "Offline");
  if (error) ui.status.textContent = error;
}

// -- camera + microphone ------------------------------------------------------------------

async function startPreview() {
  try {
    camera = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    });
  } catch (err) {
    camera = null;
    setPhase("error", `Camera/microphone unavailable: ${err.message || err.name}. Allow access and reload.`);
    return;
  }
  ui.preview.srcObject = camera;
  ui.empty.hidden = true;
  ui.mic.disabled = !camera.getAudioTracks().length;
  ui.cam.disabled = !camera.getVideoTracks().length;
  setPhase("preview");
  ui.status.textContent = "Preview: only you see this until you go live.";
}

function toggleTrack(button, tracks, on, off) {
  const enabled = !(tracks[0] && tracks[0].enabled);
  for (const t of tracks) t.enabled = enabled;
  button.setAttribute("aria-pressed", String(enabled));
  button.textContent = enabled ? on : off;
  button.classList.toggle("off", !enabled);
}

async function goLive() {
  if (!camera) return;
  setPhase("publishing");
  ui.status.textContent = "Connecting to the node…";
  try {
    const sources = [];
    if (camera.getAudioTracks().length) sources.push("microphone");
    if (camera.getVideoTracks().length) sources.push("camera");
    live = await publish({ url: `/whip/${encodeURIComponent(room)}`, token, stream: camera, sources });
  } catch (err) {
    live = null;
    setPhase("error", `Could not go live: ${err.message}`);
    toast(`Could not go live: ${err.message}`, "error");
    return;
  }
  const session = live;
  S.location = session.location;
  const onState = () => {
    S.connectionState = session.pc.connectionState;
    if (live !== session) return;
    if (session.pc.connectionState === "connected") {
      setPhase("live");
      ui.status.textContent = "You are live.";
    } else if (session.pc.connectionState === "failed") {
      endLive(`The connection to the node failed. Go live again.`);
    }
  };
  session.pc.addEventListener("connectionstatechange", onState);
  onState();
  stopStats = pollStats(session.pc, 1000, (report) => {
    let bytes = 0;
    report.forEach((r) => {
      if (r.type === "outbound-rtp" && r.kind === "video") {
        S.framesEncoded = r.framesEncoded || 0;
        S.frameSize = r.frameWidth ? `${r.frameWidth}x${r.frameHeight}` : null;
        S.fps = r.framesPerSecond || 0;
      }
      if (r.type === "outbound-rtp") bytes += r.bytesSent || 0;
    });
    const now = performance.now();
    if (S.lastBytes !== undefined && S.phase === "live") {
      const kbps = Math.round(((bytes - S.lastBytes) * 8) / (now - S.lastT));
      ui.status.textContent = `Live${S.frameSize ? ` · ${S.frameSize}` : ""}${S.fps ? ` @ ${Math.round(S.fps)} fps` : ""} · ${kbps} kbit/s`;
    }
    S.lastBytes = bytes;
    S.lastT = now;
  });
}

async function endLive(reason = "") {
  const session = live;
  live = null;
  if (stopStats) stopStats();
  stopStats = null;
  S.lastBytes = undefined;
  if (session) await session.stop();
  S.connectionState = "closed";
  setPhase(reason ? "error" : "stopped", reason || null);
  if (!reason) ui.status.textContent = "You ended the live. Go live again whenever you are ready.";
}

// -- screen share ------------------------------------------------------------------------------

async function shareScreen() {
  if (screen) { await stopScreen(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
  } catch (err) {
    if (err.name !== "NotAllowedError") toast(`Screen share failed: ${err.message}`, "error");
    return;
  }
  const track = stream.getVideoTracks()[0];
  if ("contentHint" in track) track.contentHint = "detail";
  screen = { stream, session: null };
  S.screen.phase = "publishing";
  ui.share.textContent = "Stop sharing";
  ui.share.classList.add("active");
  ui.screenPreview.srcObject = stream;
  ui.screenPreview.hidden = false;
  track.addEventListener("ended", () => stopScreen());
  try {
    const session = await publish({ url: `/whip/${encodeURIComponent(room)}`, token, stream, sources: ["screen"] });
    if (!screen || screen.stream !== stream) { session.stop(); return; }
    screen.session = session;
    session.pc.addEventListener("connectionstatechange", () => {
      S.screen.connectionState = session.pc.connectionState;
      if (session.pc.connectionState === "connected") S.screen.phase = "live";
      if (session.pc.connectionState === "failed") { toast("Screen share connection failed", "error"); stopScreen(); }
    });
  } catch (err) {
    toast(`Could not share the screen: ${err.message}`, "error");
    await stopScreen();
  }
}

async function stopScreen() {
  const current = screen;
  screen = null;
  S.screen.phase = "off";
  ui.share.textContent = "Share screen";
  ui.share.classList.remove("active");
  ui.screenPreview.hidden = true;
  ui.screenPreview.srcObject = null;
  if (!current) return;
  for (const t of current.stream.getTracks()) t.stop();
  if (current.session) await current.session.stop();
}

// -- chat and moderation -----------------------------------------------------------------------

function renderKeywords() {
  ui.keywords.replaceChildren(...S.keywords.map((word) =>
    el("li", { className: "chip" }, el("span", { textContent: word }),
      el("button", { type: "button", className: "chip-x", textContent: "×", title: `unblock "${word}"`, dataset: { word } }))));
}

function renderMuted() {
  const now = Date.now();
  const entries = Object.entries(S.muted).filter(([, until]) => !until || until > now);
  S.muted = Object.fromEntries(entries);
  if (!entries.length) { ui.muted.replaceChildren(el("li", { className: "muted empty", textContent: "nobody" })); return; }
  ui.muted.replaceChildren(...entries.map(([identity, until]) =>
    el("li", { className: "chip", title: until ? `until ${formatTime(until)}` : "" }, el("span", { textContent: identity }),
      el("button", { type: "button", className: "chip-x", textContent: "×", title: `unmute ${identity}`, dataset: { identity } }))));
}

function startChat(claims) {
  const client = new ChatClient({ room, token });
  const panel = new ChatPanel($("#chat"), client, { me: claims ? claims.sub : "", staff: true, state: S.chat });
  const chatState = $("#chat .chat-state");
  let keywordProbe = null;
  client.on("state", ({ state }) => {
    chatState.textContent = state === "open" ? "" : state;
    if (state === "open") keywordProbe = client.send("mod.keywords", { add: [], remove: [] }); // current list
  });
  client.on("error", (d) => { if (d.reply_to && d.reply_to === keywordProbe) panel.hideNotice(); });
  client.on("likes.updated", (d) => { S.likes = d.total || 0; ui.likes.textContent = formatCount(S.likes); });
  client.on("presence", (d) => { S.viewers = d.viewers || 0; ui.viewers.textContent = formatCount(S.viewers); });
  client.on("welcome", (d) => {
    if (typeof d.viewers === "number") { S.viewers = d.viewers; ui.viewers.textContent = formatCount(d.viewers); }
  });
  client.on("mod.keywords", (d) => {
    const list = d.keywords || d.list || d.words;
    if (Array.isArray(list)) { S.keywords = list.map(String); renderKeywords(); }
  });
  client.on("mod.slowmode", (d) => { ui.slowmode.value = String(d.seconds || 0); });
  client.on("mod.muted", (d) => { S.muted[d.identity] = d.until || 0; renderMuted(); });
  client.on("mod.unmuted", (d) => { delete S.muted[d.identity]; renderMuted(); });

  ui.slowmode.addEventListener("change", () => {
    client.send("mod.slowmode", { seconds: Number(ui.slowmode.value) });
  });
  ui.keywordForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const word = ui.keywordInput.value.trim();
    if (!word) return;
    if (client.send("mod.keywords", { add: [word], remove: [] }) !== null) ui.keywordInput.value = "";
  });
  ui.keywords.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-word]");
    if (button) client.send("mod.keywords", { add: [], remove: [button.dataset.word] });
  });
  ui.muted.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-identity]");
    if (button) client.send("mod.unmute", { identity: button.dataset.identity });
  });
  setInterval(renderMuted, 30000);
  window.edgeChat = client; // test hook: edgeChat.send(type, data), edgeChat.emit(type, data, envelope)
  const shop = new CommerceConsole({ root: $("#commerce"), client, token, room, state: S });
  const engage = new HostEngage({ root: $("#engage"), client, token, room, state: S });
  client.connect();
  shop.load();
  engage.load();
  // The after-sales console link only when the node has the plugin.
  const consoleLink = $("#console-link");
  consoleLink.hidden = true;
  api(`/v1/plugins/aftersales/rooms/${encodeURIComponent(room)}/faq`, token)
    .then(() => { consoleLink.hidden = false; }, () => {});
  return client;
}

// -- start ---------------------------------------------------------------------------------------

async function main() {
  token = takeToken("host", room);
  if (!token) {
    setPhase("token");
    token = await askToken($("#token-form"), (t) => tokenWarning(t, room, HOST_ROLES));
    storeToken("host", room, token);
  }
  const claims = tokenClaims(token);
  S.identity = claims ? claims.sub : null;
  S.role = claims ? claims.role : null;
  const warning = tokenWarning(token, room, HOST_ROLES);
  if (warning) toast(warning, "warn", 8000);
  $("#app").hidden = false;

  ui.goLive.addEventListener("click", () => (live ? endLive() : goLive()));
  ui.mic.addEventListener("click", () => toggleTrack(ui.mic, camera.getAudioTracks(), "Mic on", "Mic off"));
  ui.cam.addEventListener("click", () => toggleTrack(ui.cam, camera.getVideoTracks(), "Camera on", "Camera off"));
  ui.share.addEventListener("click", shareScreen);
  ui.share.disabled = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  if (ui.share.disabled) ui.share.title = "This browser cannot share its screen";
  window.addEventListener("pagehide", () => {
    if (live) live.stop({ keepalive: true });
    if (screen && screen.session) screen.session.stop({ keepalive: true });
  });

  startChat(claims);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setPhase("error", "This page needs a secure context (https or localhost) for the camera.");
    return;
  }
  await startPreview();
}

main().catch((err) => {
  console.error(err);
  setPhase("error", err.message || String(err));
});
