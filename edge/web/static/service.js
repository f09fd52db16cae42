// After-sales agent console (docs/aftersales.md), served by the aftersales plugin at
// /v1/plugins/aftersales/console/{room}. A `service` agent sees the room's open
// tickets (priority queue first), a ticket's conversation, answers and closes it.
// Everything travels on the room's WebSocket (chat.js ChatClient):
//   → aftersales.queue, aftersales.history {ticket_id}, aftersales.message {ticket_id, text},
//     aftersales.close {ticket_id, resolution}
//   ← aftersales.queue, aftersales.history, aftersales.ticket {event, ticket, message?},
//     aftersales.message, aftersales.sent, error
//
// window.edgeState (for tests):
//   phase     "token" | "connecting" | "ready" | "reconnecting" | "error"
//   tickets   the open tickets in queue order: [{ticket_id, buyer, order_id, queue, awaiting, reason}]
//   selected  the ticket shown, or null; messages: its conversation [{message_id, kind, identity, text}]
//   sent      answers the node acknowledged; closed: ticket ids closed while the page was open
//   errors    [{code, reason}]

import { ChatClient, describeError } from "./chat.js";
import { $, askToken, el, forgetToken, formatTime, storeToken, takeToken, tokenWarning, toast } from "./ui.js";

const ROLES = ["service"];
const STATS_EVERY_MS = 10000;
const room = document.body.dataset.room;
const API = `/v1/plugins/aftersales/rooms/${encodeURIComponent(room)}`;

const S = window.edgeState = {
  page: "service", room, phase: "init", error: null, tickets: [], selected: null, messages: [],
  sent: 0, closed: [], errors: [], stats: null,
};

const ui = {
  app: $("#app"), form: $("#token-form"), state: $("#console-state"), openCount: $("#open-count"),
  median: $("#median"), list: $("#ticket-list"), empty: $("#queue-empty"), title: $("#ticket-title"),
  meta: $("#ticket-meta"), log: $("#ticket-log"), notice: $("#console-notice"), conversation: $("#conversation"),
  answerForm: $("#answer-form"), answer: $("#answer-input"), answerSend: $("#answer-send"),
  closeForm: $("#close-form"), resolution: $("#resolution-input"), closeButton: $("#close-ticket"),
};

let token = "";
let client = null;
const tickets = new Map(); // ticket_id -> ticket view (open ones)

function setPhase(phase, error = null) {
  S.phase = phase;
  S.error = error;
  document.body.dataset.phase = phase;
  const pill = { ready: ["ok", "Online"], connecting: ["connecting", "Connecting…"],
    reconnecting: ["connecting", "Reconnecting…"], error: ["error", "Error"], token: ["offline", "Token needed"] }[phase];
  if (pill) { ui.state.dataset.state = pill[0]; ui.state.textContent = pill[1]; }
  if (error) showNotice(error, "error", 0);
  updateComposer();
}

function showNotice(text, kind = "info", hideAfterMs = 6000) {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = false;
  clearTimeout(showNotice.timer);
  if (hideAfterMs) showNotice.timer = setTimeout(() => { ui.notice.hidden = true; }, hideAfterMs);
}

// -- the queue ----------------------------------------------------------------------------------

function order(a, b) {
  if (a.priority !== b.priority) return a.priority ? -1 : 1;
  return a.created_at - b.created_at || (a.ticket_id < b.ticket_id ? -1 : 1);
}

function waited(ticket) {
  const seconds = Math.max(0, Date.now() / 1000 - ticket.created_at);
  return seconds < 90 ? `${Math.round(seconds)} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`;
}

function renderQueue() {
  const open = [...tickets.values()].sort(order);
  S.tickets = open.map((t) => ({
    ticket_id: t.ticket_id, buyer: t.buyer, order_id: t.order_id, queue: t.queue, awaiting: t.awaiting, reason: t.reason,
  }));
  ui.list.replaceChildren(...open.map((t) => {
    const item = el("button", {
      type: "button", className: `ticket${t.ticket_id === S.selected ? " active" : ""}`,
      dataset: { ticketId: t.ticket_id, queue: t.queue, awaiting: t.awaiting },
    },
    t.priority ? el("span", { className: "pill", textContent: "priority", dataset: { state: "connecting" } }) : null,
    el("span", { className: "who", textContent: t.buyer }),
    el("span", { className: "muted", textContent: ` ${t.reason} · ${t.order_id}` }),
    el("span", { className: "muted", textContent: t.awaiting === "agent" ? ` · waiting ${waited(t)}` : " · answered" }));
    item.style.width = "100%";
    item.style.justifyContent = "flex-start";
    item.style.flexWrap = "wrap";
    return el("li", {}, item);
  }));
  ui.empty.hidden = open.length > 0;
  ui.openCount.textContent = String(open.length);
  document.title = `${open.length ? `(${open.length}) ` : ""}After-sales · ${room} · edge`;
}

function upsert(ticket) {
  if (ticket.room !== room) return;
  if (ticket.status === "open") tickets.set(ticket.ticket_id, ticket);
  else tickets.delete(ticket.ticket_id);
  renderQueue();
}

// -- one ticket ------------------------------------------------------------------------------------

function select(ticketId) {
  S.selected = ticketId;
  S.messages = [];
  ui.log.replaceChildren();
  ui.conversation.dataset.ticket = ticketId || "";
  renderHeader(tickets.get(ticketId) || null);
  renderQueue();
  updateComposer();
  if (ticketId && client) client.send("aftersales.history", { ticket_id: ticketId });
}

function renderHeader(ticket) {
  if (!ticket) {
    ui.title.textContent = S.selected ? `Ticket ${S.selected}` : "Pick a ticket";
    ui.meta.textContent = "";
    return;
  }
  ui.title.textContent = `${ticket.buyer} · ${ticket.reason}`;
  const parts = [`order ${ticket.order_id}`, `SKU ${ticket.sku}`, ticket.queue === "priority" ? `priority (${ticket.tier})` : "normal queue"];
  if (ticket.first_response_seconds !== null && ticket.first_response_seconds !== undefined) {
    parts.push(`first answer ${ticket.first_response_seconds.toFixed(1)} s`);
  }
  if (ticket.status === "closed") parts.push(`closed: ${ticket.resolution}`);
  ui.meta.textContent = parts.join(" · ");
}

function addMessage(m) {
  if (m.ticket_id !== S.selected || S.messages.some((x) => x.message_id === m.message_id)) return;
  const identity = (m.from && m.from.identity) || "?";
  S.messages.push({ message_id: m.message_id, kind: m.kind, identity, text: m.text });
  const row = el("li", { className: `msg role-${m.kind === "agent" ? "moderator" : "viewer"}` },
    el("span", { className: "who", textContent: identity }),
    m.kind === "agent" ? el("span", { className: "badge", textContent: "agent" }) : null,
    el("span", { className: "text", textContent: m.text }));
  if (m.at) row.title = formatTime(m.at * 1000);
  ui.log.append(row);
  ui.log.scrollTop = ui.log.scrollHeight;
}

function updateComposer() {
  const ticket = S.selected && tickets.get(S.selected);
  const usable = S.phase === "ready" && !!ticket;
  for (const input of [ui.answer, ui.answerSend, ui.resolution, ui.closeButton]) input.disabled = !usable;
}

// -- stats (REST) ------------------------------------------------------------------------------------

async function refreshStats() {
  try {
    const r = await fetch(`${API}/stats`, { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) return;
    S.stats = await r.json();
    const median = S.stats.first_response && S.stats.first_response.median_seconds;
    ui.median.textContent = median === null || median === undefined ? "–" : `${median.toFixed(1)} s`;
  } catch (err) { console.warn("stats", err); }
}

// -- wiring -------------------------------------------------------------------------------------------

function connect() {
  client = new ChatClient({ room, token });
  client.on("state", ({ state, detail }) => {
    if (state === "open") { setPhase("ready"); client.send("aftersales.queue", {}); if (S.selected) select(S.selected); }
    else if (state === "refused") {
      forgetToken("service", room);
      setPhase("error", `Refused: ${detail.reason}`);
    } else if (state === "reconnecting") setPhase("reconnecting");
    else if (state === "connecting" && S.phase !== "ready") setPhase("connecting");
  });
  client.on("aftersales.queue", (d) => {
    tickets.clear();
    for (const t of d.tickets || []) tickets.set(t.ticket_id, t);
    renderQueue();
    renderHeader(tickets.get(S.selected) || null);
    updateComposer();
  });
  client.on("aftersales.ticket", (d) => {
    const t = d.ticket;
    if (d.event === "opened" && !tickets.has(t.ticket_id)) toast(`New ticket from ${t.buyer}${t.priority ? " (priority)" : ""}`);
    if (d.event === "closed" && !S.closed.includes(t.ticket_id)) S.closed.push(t.ticket_id);
    upsert(t);
    if (t.ticket_id === S.selected) { renderHeader(t); updateComposer(); }
    if (d.message) addMessage(d.message);
    refreshStats();
  });
  client.on("aftersales.history", (d) => {
    if (d.ticket.ticket_id !== S.selected) return;
    if (d.ticket.status === "open") tickets.set(d.ticket.ticket_id, d.ticket);
    renderHeader(d.ticket);
    for (const m of d.messages || []) addMessage(m);
    updateComposer();
  });
  client.on("aftersales.message", (d) => {
    const t = tickets.get(d.ticket_id);
    if (t) { t.awaiting = d.kind === "agent" ? "buyer" : "agent"; renderQueue(); }
    addMessage(d);
  });
  client.on("aftersales.sent", (d) => {
    if (d.closed) { ui.resolution.value = ""; } else { S.sent += 1; }
  });
  client.on("error", (d) => {
    S.errors.push({ code: d.code, reason: d.reason });
    if (S.errors.length > 20) S.errors.shift();
    showNotice(describeError(d), "error");
  });
  client.connect();
}

ui.list.addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-ticket-id]");
  if (button) select(button.dataset.ticketId);
});

ui.answerForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.answer.value.trim();
  if (!text || !S.selected) return;
  if (client.send("aftersales.message", { ticket_id: S.selected, text }) === null) {
    showNotice("Not connected.", "warn");
    return;
  }
  ui.answer.value = "";
});

ui.closeForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const resolution = ui.resolution.value.trim();
  if (!resolution || !S.selected) { showNotice("Write the resolution the buyer will read.", "warn"); return; }
  client.send("aftersales.close", { ticket_id: S.selected, resolution });
});

setInterval(() => { if (S.phase === "ready") renderQueue(); }, 5000); // waiting times
setInterval(() => { if (S.phase === "ready") refreshStats(); }, STATS_EVERY_MS);

async function main() {
  token = takeToken("service", room);
  if (!token) {
    setPhase("token");
    token = await askToken(ui.form, (t) => tokenWarning(t, room, ROLES));
    storeToken("service", room, token);
  }
  ui.app.hidden = false;
  setPhase("connecting");
  connect();
  refreshStats();
}

main().catch((err) => setPhase("error", String(err)));
