// Viewer page: WHEP player with two video slots (the host's camera and screen
// share; the node fills and refills them) and one audio slot, chat, likes, the
// pinned product card with its buy button (commerce.js), the member badge and
// daily check-in (member.js), coupons, polls and draws (engage.js) and the
// after-sales panel (aftersales.js).
//
// Page parameters: ?token= (moved out of the address bar), ?currency=XXX (prices
// in that currency), ?ref=<identity> (who invited this viewer), ?service=<sku>
// (open the after-sales panel about that product; the replay page links here).
//
// window.edgeState (for tests; no pixel reading needed):
//   phase            "token" | "connecting" | "watching" | "reconnecting" | "error"
//   connectionState  the WHEP peer connection's
//   framesDecoded    video frames decoded, all slots together (getStats)
//   slots            [{ mid, kind, framesDecoded, active, source, participant }]
//   layout           "none" | "single" | "dual"
//   likes, viewers   from likes.updated / presence
//   product          the pinned product's data (+ secondsLeft, stock, sold_out), or null
//   orders           [{order_id, sku, state, amount, currency, history}] newest first
//   order            the purchase waiting for its answer {key, sku, ...}, or null
//   lastRejection    {sku, reason, detail} of the last order.rejected
//   sales            flash sales by SKU
//   member           loyalty: {available, tier, points, growth, checkedInToday, ...}
//   coupons, polls, draws, referral, notices    segments (engage.js)
//   aftersales       the after-sales panel (aftersales.js)
//   currency         the ?currency= asked for; currencyConfirmed (currency.updated), currencyError
//   chat             { state, messages: [{id, identity, role, text, ts}], errors, ... }

import { view, describe } from "./webrtc.js";
import { ChatClient, ChatPanel } from "./chat.js";
import { ProductCard } from "./commerce.js";
import { MemberBadge } from "./member.js";
import { ViewerEngage } from "./engage.js";
import { AftersalesPanel } from "./aftersales.js";
import {
  $, api, el, askToken, forgetToken, formatCount, pageParam, pollStats, storeToken, takeToken, tokenClaims,
  tokenWarning, toast,
} from "./ui.js";

const VIEW_ROLES = ["viewer", "host", "cohost", "moderator", "service"];
const STAFF = ["host", "cohost", "moderator", "admin"];
const ACTIVE_WINDOW_MS = 2000;       // a slot without a new frame for this long is idle
const LIKE_INTERVAL_MS = 500;        // likes are batched: at most one `like` per 0.5 s
const room = document.body.dataset.room;

const S = window.edgeState = {
  page: "watch", room, phase: "init", error: null, connectionState: "new", framesDecoded: 0,
  slots: [], layout: "none", likes: 0, likesSent: 0, viewers: 0, product: null, chat: {},
  audio: { packetsReceived: 0, playing: false }, currency: null, currencyConfirmed: null, currencyError: null,
};

const ui = {
  stage: $("#stage"), videos: [$("#video-0"), $("#video-1")], audio: $("#audio-0"), empty: $("#stage-empty"),
  unmute: $("#unmute"), status: $("#media-status"), badge: $("#live-badge"), viewers: $("#viewer-count"),
  likeButton: $("#like-button"), likes: $("#like-count"), hearts: $("#hearts"), product: $("#product-card"),
};

let token = "";
let session = null;
let chat = null;
let retryMs = 1000;
let retryTimer = null;

function setBadge(state, text) {
  ui.badge.dataset.state = state;
  ui.badge.textContent = text;
}

function setPhase(phase, error = null) {
  S.phase = phase;
  S.error = error;
  document.body.dataset.phase = phase;
  if (error) ui.status.textContent = error;
  updateStage();
}

// -- player --------------------------------------------------------------------------------

function updateStage() {
  const active = S.slots.filter((s) => s.kind === "video" && s.active);
  let main = null;
  let pip = null;
  if (active.length === 1) main = active[0];
  else if (active.length >= 2) {
    // Screen share large, camera in the corner; without sources: slot order.
    main = active.find((s) => (s.source || "").startsWith("screen")) || active[1];
    pip = active.find((s) => s !== main);
  }
  S.layout = !main ? "none" : pip ? "dual" : "single";
  ui.stage.dataset.layout = S.layout;
  ui.videos.forEach((video, i) => {
    const slot = S.slots.find((s) => s.kind === "video" && s.index === i);
    video.classList.toggle("main", !!slot && slot === main);
    video.classList.toggle("pip", !!slot && slot === pip);
    if (slot && slot === main) fitStage(video);
  });
  const connected = S.connectionState === "connected";
  ui.empty.hidden = !!main;
  ui.empty.textContent = S.phase === "error" ? (S.error || "Error")
    : !connected ? "Connecting…" : "Waiting for the host to go live…";
  if (S.phase === "token") setBadge("offline", "Token needed");
  else if (main) setBadge("live", "LIVE");
  else if (connected) setBadge("offline", "Offline");
  else if (S.phase === "error") setBadge("error", "Error");
  else setBadge("connecting", "Connecting…");
}

/** On narrow screens the stage takes the main video's shape (portrait phones, landscape cameras). */
function fitStage(video) {
  if (video.videoWidth && video.videoHeight) {
    ui.stage.style.setProperty("--ar", `${video.videoWidth} / ${video.videoHeight}`);
  }
}

async function labelSlots() {
  if (!session) return;
  const current = session;
  try {
    const info = await describe(current, token);
    if (session !== current) return;
    for (const described of info.slots || []) {
      const slot = S.slots.find((s) => s.mid === described.mid);
      if (slot) { slot.source = described.source; slot.participant = described.participant; }
    }
    updateStage();
  } catch (err) {
    console.warn("session describe", err);
  }
}

function readStats(report) {
  const now = performance.now();
  let total = 0;
  let changed = false;
  report.forEach((r) => {
    if (r.type !== "inbound-rtp") return;
    if (r.kind === "audio") { S.audio.packetsReceived = r.packetsReceived || 0; return; }
    const slot = S.slots.find((s) => s.mid === r.mid) ||
      S.slots.find((s) => s.kind === "video" && s.track && s.track.id === r.trackIdentifier);
    if (!slot) return;
    const frames = r.framesDecoded || 0;
    total += frames;
    if (frames > slot.framesDecoded) slot.lastFrameAt = now;
    slot.framesDecoded = frames;
    slot.frameSize = r.frameWidth ? `${r.frameWidth}x${r.frameHeight}` : null;
    const active = !!slot.lastFrameAt && now - slot.lastFrameAt < ACTIVE_WINDOW_MS;
    if (active !== slot.active) { slot.active = active; changed = true; }
  });
  S.framesDecoded = total;
  // Which producer a slot shows (camera, screen, a co-host) is asked when the set of
  // playing slots changes, with jitter: a whole audience changes at the same moment.
  if (changed) { updateStage(); setTimeout(labelSlots, Math.random() * 1000); }
  const main = S.slots.find((s) => s.active);
  ui.status.textContent = main ? `Watching${main.frameSize ? ` · ${main.frameSize}` : ""}` : "";
}

async function playAudio() {
  try {
    await ui.audio.play();
    S.audio.playing = true;
    ui.unmute.hidden = true;
  } catch (err) {
    // Autoplay policy: sound needs a tap first.
    S.audio.playing = false;
    ui.unmute.hidden = false;
  }
}

async function watch() {
  clearTimeout(retryTimer);
  setPhase(S.phase === "reconnecting" ? "reconnecting" : "connecting");
  let current;
  try {
    current = await view({ url: `/whep/${encodeURIComponent(room)}`, token, videoSlots: 2, audioSlots: 1 });
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      forgetToken("watch", room);
      setPhase("error", `The node refused this token: ${err.message}. Reload the page to enter another one.`);
      return;
    }
    scheduleRetry(`Could not connect: ${err.message}`);
    return;
  }
  session = current;
  S.location = current.location;
  S.slots = current.slots.map((s) => ({
    mid: s.mid, kind: s.kind, index: s.index, track: s.track, framesDecoded: 0, active: false,
    source: null, participant: null, lastFrameAt: 0,
  }));
  // JSON-able for tests: the track objects stay out of the exposed state.
  for (const slot of S.slots) Object.defineProperty(slot, "track", { enumerable: false });
  for (const slot of current.slots) {
    if (slot.kind === "video") ui.videos[slot.index].srcObject = new MediaStream([slot.track]);
    else if (slot.index === 0) { ui.audio.srcObject = new MediaStream([slot.track]); playAudio(); }
  }
  const pc = current.pc;
  const onState = () => {
    S.connectionState = pc.connectionState;
    if (session !== current) return;
    if (pc.connectionState === "connected") {
      retryMs = 1000;
      setPhase("watching");
      labelSlots();
    } else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
      session = null;
      current.stop();
      scheduleRetry("The connection to the node was lost.");
    }
    updateStage();
  };
  pc.addEventListener("connectionstatechange", onState);
  onState();
  // Fast polling until the first frame (for at most 10 s), then twice a second.
  const started = performance.now();
  let fast = true;
  const stopFast = pollStats(pc, 100, (report) => {
    readStats(report);
    if (fast && (S.framesDecoded > 0 || performance.now() - started > 10000)) {
      fast = false;
      stopFast();
      pollStats(pc, 500, readStats);
    }
  });
}

function scheduleRetry(reason) {
  S.connectionState = "closed";
  for (const slot of S.slots) slot.active = false;
  setPhase("reconnecting", `${reason} Retrying in ${Math.round(retryMs / 1000)} s…`);
  retryTimer = setTimeout(watch, retryMs);
  retryMs = Math.min(retryMs * 2, 30000);
}

// -- likes ---------------------------------------------------------------------------------------

let pendingLikes = 0;
let lastLikeSent = 0;
let likeTimer = null;

function flushLikes() {
  likeTimer = null;
  if (!pendingLikes || !chat) return;
  const count = Math.min(pendingLikes, 50);
  if (chat.send("like", { count }) === null) return;
  pendingLikes -= count;
  S.likesSent += count;
  lastLikeSent = performance.now();
  if (pendingLikes) likeTimer = setTimeout(flushLikes, LIKE_INTERVAL_MS);
}

function like() {
  pendingLikes += 1;
  const heart = el("span", { className: "heart" });
  heart.style.setProperty("--drift", `${Math.round(Math.random() * 40 - 20)}px`);
  ui.hearts.append(heart);
  heart.addEventListener("animationend", () => heart.remove());
  if (likeTimer) return;
  const wait = Math.max(0, lastLikeSent + LIKE_INTERVAL_MS - performance.now());
  likeTimer = setTimeout(flushLikes, wait);
}

// -- chat ------------------------------------------------------------------------------------------

function startChat(claims) {
  const me = claims ? claims.sub : "";
  const currency = pageParam("currency").trim().toUpperCase();
  S.currency = /^[A-Z]{3}$/.test(currency) ? currency : null;
  const ref = pageParam("ref").trim();
  // The node hands the WebSocket URL's parameters to plugins; currency.set says it again.
  chat = new ChatClient({ room, token, params: { currency: S.currency, ref: ref || null } });
  const role = claims ? claims.role : "";
  new ChatPanel($("#chat"), chat, { me, staff: STAFF.includes(role), state: S.chat });
  const chatState = $("#chat .chat-state");
  let currencyId = null;
  chat.on("state", ({ state }) => {
    chatState.textContent = state === "open" ? "" : state;
    ui.likeButton.disabled = state !== "open";
    if (state === "open" && pendingLikes && !likeTimer) flushLikes();
    if (state === "open" && S.currency) currencyId = chat.send("currency.set", { currency: S.currency }, { quiet: true });
  });
  chat.on("currency.updated", (d) => { S.currencyConfirmed = d.currency; });
  chat.on("error", (d) => {
    if (!d.reply_to || d.reply_to !== currencyId) return;
    S.currencyError = d.code;
    if (d.code !== "unknown_type") toast(`Prices cannot be shown in ${S.currency} here.`, "warn", 5000);
  });
  chat.on("likes.updated", (d) => { S.likes = d.total || 0; ui.likes.textContent = formatCount(S.likes); });
  chat.on("presence", (d) => { S.viewers = d.viewers || 0; ui.viewers.textContent = formatCount(S.viewers); });
  chat.on("welcome", (d) => {
    if (typeof d.viewers === "number") { S.viewers = d.viewers; ui.viewers.textContent = formatCount(d.viewers); }
  });

  const member = new MemberBadge({
    badge: $("#member-badge"), checkin: $("#checkin-button"), client: chat, token, state: S,
    canCheckIn: !STAFF.includes(role) && role !== "service", // loyalty's earning_roles are viewers by default
  });
  new ProductCard({
    root: ui.product, status: $("#order-status"), client: chat, state: S,
    onPaid: () => { member.refreshSoon(1000); setTimeout(() => member.load(), 3000); }, // the credit lands a moment later
  });
  new ViewerEngage({ root: $("#engage"), coupons: $("#coupons"), client: chat, token, room, state: S, me, ref });
  const titles = {}; // sku -> title, of products this page saw (or looked up)
  const titleOf = (orderId, sku) => {
    const order = orderId && S.orders.find((o) => o.order_id === orderId);
    if (order && order.title) return order.title;
    if (S.product && S.product.sku === sku) return S.product.title || "";
    const known = S.orders.find((o) => o.sku === sku && o.title);
    return known ? known.title : titles[sku] || "";
  };
  chat.on("product.pinned", (d) => { if (d.sku && d.title) titles[d.sku] = d.title; });
  const aftersales = new AftersalesPanel({
    button: $("#aftersales-button"), panel: $("#aftersales-panel"), client: chat, token, room, state: S,
    titleOf, skuNow: () => (S.product ? S.product.sku : null),
  });
  window.edgeChat = chat; // test hook: edgeChat.send(type, data), edgeChat.emit(type, data, envelope)
  chat.connect();

  member.load();
  const service = pageParam("service").trim();
  aftersales.probe().then((available) => {
    if (!available || !service) return;
    aftersales.open(service);
    // The product's title for the panel, when the node has the commerce plugin.
    api(`/v1/plugins/commerce/rooms/${encodeURIComponent(room)}/products/${encodeURIComponent(service)}`, token)
      .then((p) => { titles[p.sku] = p.title; aftersales.renderAbout(); aftersales.renderTickets(); }, () => {});
  });
}

// -- start -------------------------------------------------------------------------------------------

async function main() {
  token = takeToken("watch", room);
  if (!token) {
    setPhase("token");
    token = await askToken($("#token-form"), (t) => tokenWarning(t, room, VIEW_ROLES));
    storeToken("watch", room, token);
  }
  const claims = tokenClaims(token);
  S.identity = claims ? claims.sub : null;
  S.role = claims ? claims.role : null;
  const warning = tokenWarning(token, room, VIEW_ROLES);
  if (warning) toast(warning, "warn", 8000);
  $("#app").hidden = false;

  ui.likeButton.addEventListener("click", like);
  for (const video of ui.videos) video.addEventListener("resize", () => { if (video.classList.contains("main")) fitStage(video); });
  ui.unmute.addEventListener("click", playAudio);
  window.addEventListener("pagehide", () => { if (session) session.stop({ keepalive: true }); });
  startChat(claims);
  await watch();
}

main().catch((err) => {
  console.error(err);
  setPhase("error", err.message || String(err));
});
