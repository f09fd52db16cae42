// Replay page: plays the room's latest recording (WebM/Matroska served with HTTP
// Range by the node) with its product markers: a list and ticks on a timeline.
// Clicking a marker seeks the video there and shows the product with an
// "Ask service about this product" link (/watch/{room}?service=<sku>).
//
// window.edgeState (for tests; no pixel reading needed):
//   phase         "init" | "token" | "loading" | "ready" | "empty" | "error"
//   recording     the recording's id; duration (seconds)
//   markers       [{offset, sku, title, price, currency, at}]
//   currentTime, videoWidth, videoHeight, playing   from the <video>
//   selected      the marker last clicked (or null); seeks: [{to, sku}]
//   seekedTo      currentTime after the last completed seek

import { $, askToken, el, forgetToken, formatPrice, storeToken, takeToken, tokenWarning } from "./ui.js";

const room = document.body.dataset.room;
const isPublic = document.body.dataset.public === "true";
const READ_ROLES = ["viewer", "host", "cohost", "moderator", "service"];
const encodedRoom = encodeURIComponent(room);

const S = window.edgeState = {
  page: "replay", room, phase: "init", error: null, recording: null, duration: 0, markers: [],
  currentTime: 0, videoWidth: 0, videoHeight: 0, playing: false, selected: null, seeks: [], seekedTo: null,
};

const ui = {
  app: $("#app"), form: $("#token-form"), video: $("#replay-video"), empty: $("#stage-empty"),
  badge: $("#replay-badge"), status: $("#media-status"), unmute: $("#unmute"), card: $("#product-card"),
  timeline: $("#timeline"), list: $("#marker-list"), none: $("#markers-empty"), panel: $("#product-panel"),
  time: $("#product-time"), title: $("#product-title"), price: $("#product-price"), sku: $("#product-sku"),
  ask: $("#ask-service"),
};

let token = "";
let ticks = [];
let progress = null;
let current = null; // the marker whose product the stage shows

function setPhase(phase, error = null) {
  S.phase = phase;
  S.error = error;
  document.body.dataset.phase = phase;
  if (error) ui.status.textContent = error;
  const badge = { ready: ["ok", "Replay"], empty: ["offline", "No replay"], error: ["error", "Error"],
    token: ["offline", "Token needed"] }[phase] || ["connecting", "Loading"];
  ui.badge.dataset.state = badge[0];
  ui.badge.textContent = badge[1];
}

export function formatOffset(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

function withToken(url) {
  return token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
}

async function fetchMarkers() {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(`/v1/rooms/${encodedRoom}/recordings/latest/markers`, { headers, cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  return { status: response.status, body };
}

// -- timeline ------------------------------------------------------------------------------

function drawTimeline() {
  ui.timeline.replaceChildren();
  Object.assign(ui.timeline.style, { padding: "10px 16px" });
  const bar = el("div", { className: "timeline-bar" });
  Object.assign(bar.style, {
    position: "relative", height: "22px", borderRadius: "11px", background: "var(--panel-2)",
    border: "1px solid var(--line)", cursor: "pointer", overflow: "visible",
  });
  progress = el("div", { className: "timeline-progress" });
  Object.assign(progress.style, {
    position: "absolute", left: "0", top: "0", bottom: "0", width: "0%", borderRadius: "11px",
    background: "linear-gradient(135deg, var(--brand), var(--brand-2))", opacity: ".35", pointerEvents: "none",
  });
  bar.append(progress);
  bar.addEventListener("click", (ev) => {
    if (ev.target !== bar && ev.target !== progress) return;
    const rect = bar.getBoundingClientRect();
    if (S.duration > 0) seek(((ev.clientX - rect.left) / rect.width) * S.duration, null);
  });
  ticks = S.markers.map((marker, i) => {
    const tick = el("button", {
      type: "button", className: "timeline-marker", title: `${formatOffset(marker.offset)} · ${marker.title || marker.sku}`,
      dataset: { index: String(i), offset: String(marker.offset), sku: marker.sku },
    });
    tick.setAttribute("aria-label", `${marker.title || marker.sku} at ${formatOffset(marker.offset)}`);
    const left = S.duration > 0 ? Math.min(100, (marker.offset / S.duration) * 100) : 0;
    Object.assign(tick.style, {
      position: "absolute", top: "-4px", left: `calc(${left}% - 6px)`, width: "12px", height: "28px",
      minHeight: "0", padding: "0", borderRadius: "6px", background: "var(--brand-2)", border: "2px solid var(--bg)",
    });
    tick.addEventListener("click", () => select(marker));
    bar.append(tick);
    return tick;
  });
  ui.timeline.append(bar);
}

function drawList() {
  ui.list.replaceChildren();
  ui.none.hidden = S.markers.length > 0;
  Object.assign(ui.list.style, { listStyle: "none", margin: "0", padding: "0" });
  for (const [i, marker] of S.markers.entries()) {
    const price = formatPrice(marker.price, marker.currency);
    const button = el(
      "button",
      { type: "button", className: "marker", dataset: { index: String(i), offset: String(marker.offset), sku: marker.sku } },
      el("span", { className: "muted", textContent: formatOffset(marker.offset) }),
      el("span", { textContent: marker.title || marker.sku }),
      price ? el("span", { className: "product-price", textContent: price }) : null,
    );
    Object.assign(button.style, { width: "100%", justifyContent: "flex-start", gap: "10px", textAlign: "left" });
    button.addEventListener("click", () => select(marker));
    ui.list.append(el("li", {}, button));
  }
}

// -- markers ----------------------------------------------------------------------------------

function askUrl(marker) {
  return `/watch/${encodedRoom}?service=${encodeURIComponent(marker.sku)}`;
}

function showProduct(marker) {
  ui.panel.hidden = false;
  ui.time.textContent = formatOffset(marker.offset);
  ui.title.textContent = marker.title || marker.sku;
  ui.price.textContent = formatPrice(marker.price, marker.currency);
  ui.sku.textContent = marker.sku ? `SKU ${marker.sku}` : "";
  ui.ask.href = askUrl(marker);
  ui.ask.dataset.sku = marker.sku;
}

function showCard(marker) {
  if (marker === current) return;
  current = marker;
  if (!marker) { ui.card.hidden = true; return; }
  const price = formatPrice(marker.price, marker.currency);
  ui.card.replaceChildren(
    el("div", { className: "img-placeholder" }),
    el("div", { className: "product-body" },
      el("span", { className: "product-kicker", textContent: "Pinned" }),
      el("strong", { className: "product-title", textContent: marker.title || marker.sku }),
      price ? el("span", { className: "product-price", textContent: price }) : null),
  );
  ui.card.hidden = false;
}

function select(marker) {
  S.selected = marker;
  showProduct(marker);
  seek(marker.offset, marker);
}

function seek(offset, marker) {
  const to = Math.max(0, Math.min(offset, S.duration || offset));
  S.seeks.push({ to, sku: marker ? marker.sku : null });
  ui.video.currentTime = to;
  if (ui.video.paused) ui.video.play().catch(() => {});
}

function markerAt(time) {
  let found = null;
  for (const marker of S.markers) if (marker.offset <= time + 0.05) found = marker;
  return found;
}

// -- video ------------------------------------------------------------------------------------

function wireVideo() {
  const v = ui.video;
  const update = () => {
    S.currentTime = v.currentTime;
    S.videoWidth = v.videoWidth;
    S.videoHeight = v.videoHeight;
    S.playing = !v.paused && !v.ended;
    if (progress && S.duration > 0) progress.style.width = `${Math.min(100, (v.currentTime / S.duration) * 100)}%`;
    const active = markerAt(v.currentTime);
    ticks.forEach((tick, i) => { tick.style.background = S.markers[i] === active ? "var(--brand)" : "var(--brand-2)"; });
    showCard(active);
  };
  v.addEventListener("timeupdate", update);
  v.addEventListener("playing", () => { ui.empty.hidden = true; update(); });
  v.addEventListener("pause", update);
  v.addEventListener("seeked", () => { S.seekedTo = v.currentTime; update(); });
  v.addEventListener("loadedmetadata", () => {
    if (Number.isFinite(v.duration) && v.duration > 0) S.duration = v.duration;
    // On narrow screens the stage takes the video's shape (as on the watch page).
    if (v.videoWidth && v.videoHeight) $("#stage").style.setProperty("--ar", `${v.videoWidth} / ${v.videoHeight}`);
    update();
    drawTimeline();
    const start = Number(new URL(window.location.href).searchParams.get("t"));
    if (start > 0) seek(start, null);
    ui.status.textContent = `${formatOffset(S.duration)} · ${S.markers.length} product${S.markers.length === 1 ? "" : "s"}`;
  });
  v.addEventListener("volumechange", () => { ui.unmute.hidden = !v.muted; });
  v.addEventListener("error", () => {
    const err = v.error;
    setPhase("error", `The recording cannot be played${err ? ` (${err.code}: ${err.message || "media error"})` : ""}.`);
  });
  ui.unmute.addEventListener("click", () => { v.muted = false; v.play().catch(() => {}); });
}

async function load() {
  setPhase("loading");
  let { status, body } = await fetchMarkers();
  while ((status === 401 || status === 403) && !isPublic) {
    forgetToken("replay", room);
    setPhase("token");
    ui.app.hidden = true;
    token = await askToken(ui.form, (t) => tokenWarning(t, room, READ_ROLES));
    storeToken("replay", room, token);
    setPhase("loading");
    ({ status, body } = await fetchMarkers());
  }
  ui.app.hidden = false;
  if (status === 404) {
    ui.empty.textContent = "There is no recording of this room yet.";
    ui.none.hidden = true;
    setPhase("empty");
    return;
  }
  if (status !== 200 || !body) {
    setPhase("error", (body && body.detail) || `The node answered ${status}.`);
    ui.empty.textContent = S.error;
    return;
  }
  S.recording = body.recording;
  S.duration = body.duration || 0;
  S.markers = (body.markers || []).map((m) => ({
    offset: Number(m.offset) || 0, sku: String(m.sku || ""), title: String(m.title || ""),
    price: m.price, currency: m.currency, at: m.at,
  }));
  drawList();
  drawTimeline();
  ui.unmute.hidden = false;
  // The recording's own URL (not .../latest/media): a newer recording finishing while
  // this one plays must not change the bytes under the player's Range requests.
  ui.video.src = withToken(body.media_url || `/v1/rooms/${encodedRoom}/recordings/latest/media`);
  setPhase("ready");
  ui.video.play().catch(() => { /* autoplay refused: the controls are there */ });
}

/** Page-specific looks, set through the CSSOM (the CSP allows no inline styles). */
function style() {
  // The stage's native controls sit at the bottom: the product card goes to the top right.
  Object.assign(ui.card.style, { left: "auto", right: "12px", bottom: "auto", top: "12px" });
  Object.assign(ui.ask.style, {
    display: "inline-flex", alignItems: "center", justifyContent: "center", minHeight: "40px",
    padding: "0 16px", borderRadius: "10px", fontWeight: "600", textDecoration: "none", color: "#fff",
    background: "linear-gradient(135deg, var(--brand), var(--brand-2))",
  });
}

token = takeToken("replay", room);
style();
wireVideo();
load().catch((err) => setPhase("error", String(err && err.message ? err.message : err)));
