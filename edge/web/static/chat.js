// Live-room chat over the node's WebSocket (docs/messages.md).
//
// ChatClient speaks the protocol: envelopes {type, room, id, ts, data, from},
// `?token=` authentication, reconnection with backoff (not after a refusal:
// bad token, wrong room, bad room name).
// ChatPanel renders a room's chat into a page: history, messages, deletions,
// moderation notices, the sender's errors; staff get delete/mute buttons.

import { el, formatTime } from "./ui.js";

// Close codes the node uses when it refuses the connection itself.
const REFUSED = { 4400: "invalid_room", 4401: "unauthorized", 4403: "forbidden" };
const MAX_BACKOFF_MS = 15000;
const KEEP_MESSAGES = 200;

export class ChatClient {
  constructor({ room, token, url = null, params = {} }) {
    this.room = room;
    this.token = token;
    // Extra query parameters for the WebSocket URL (the node hands them to plugins),
    // e.g. {currency: "MXN", ref: "ana"}.
    this.params = params;
    // Ids of requests whose errors another part of the page shows (not the chat panel).
    this.quiet = new Set();
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${scheme}//${window.location.host}/v1/rooms/${encodeURIComponent(room)}/ws`;
    this.state = "idle";
    this.lastError = null;
    this.handlers = new Map();
    this.ws = null;
    this.nextId = 1;
    this.backoff = 500;
    this.closedByUs = false;
    this.timer = null;
  }

  /** handler(data, envelope) for one type; "*" gets every envelope, "state" state changes. */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
    return this;
  }

  emit(type, data, envelope) {
    for (const key of [type, "*"]) {
      for (const handler of this.handlers.get(key) || []) {
        try { handler(data, envelope); } catch (err) { console.error(`chat handler for ${type}`, err); }
      }
    }
  }

  setState(state, detail = null) {
    this.state = state;
    this.emit("state", { state, detail }, null);
  }

  connect() {
    this.closedByUs = false;
    clearTimeout(this.timer);
    const target = new URL(this.url);
    for (const [key, value] of Object.entries(this.params || {})) {
      if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
    }
    target.searchParams.set("token", this.token);
    this.setState("connecting");
    const ws = this.ws = new WebSocket(target.href);
    ws.addEventListener("open", () => {
      this.backoff = 500;
      this.setState("open");
    });
    ws.addEventListener("message", (ev) => {
      let envelope;
      try { envelope = JSON.parse(ev.data); } catch (_) { return; }
      if (!envelope || typeof envelope.type !== "string") return;
      if (envelope.type === "error") this.lastError = envelope.data || {};
      this.emit(envelope.type, envelope.data || {}, envelope);
    });
    ws.addEventListener("close", (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closedByUs) { this.setState("closed"); return; }
      if (REFUSED[ev.code]) {
        const detail = this.lastError && this.lastError.code === REFUSED[ev.code]
          ? this.lastError.reason : ev.reason || REFUSED[ev.code];
        this.setState("refused", { code: REFUSED[ev.code], reason: detail });
        return;
      }
      const delay = ev.code === 4503 ? Math.max(this.backoff, 5000) : this.backoff;
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      this.setState("reconnecting", { code: ev.code, inMs: delay });
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  /**
   * Send an envelope; returns its id, or null when not connected. With
   * {quiet: true} an `error` answering it is left to the caller (the chat panel
   * does not show it).
   */
  send(type, data = {}, { quiet = false } = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return null;
    const id = `c-${this.nextId++}`;
    this.ws.send(JSON.stringify({ type, id, data }));
    if (quiet) {
      this.quiet.add(id);
      if (this.quiet.size > 200) this.quiet.delete(this.quiet.values().next().value);
    }
    return id;
  }

  /** True when `id` was sent with {quiet: true}. */
  isQuiet(id) {
    return !!id && this.quiet.has(id);
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
    else this.setState("closed");
  }
}

const ERROR_TEXT = {
  muted: "You are muted.",
  slow_mode: "Slow mode is on: wait a little before sending again.",
  blocked_keyword: "Your message contains a blocked word.",
  rate_limited: "You are sending too fast.",
  unknown_type: "This node does not offer that (is the chat plugin installed?).",
  forbidden: "You are not allowed to do that.",
  too_large: "That message is too long.",
  invalid_data: "That message was not accepted.",
};

/** What the user reads for an error envelope's data. */
export function describeError(data) {
  const known = ERROR_TEXT[data.code];
  return known ? `${known} (${data.reason || data.code})` : `${data.code || "error"}: ${data.reason || ""}`;
}

/**
 * Renders `client`'s chat into `root`, which holds `.chat-log`, `.chat-form`
 * (with an input) and `.chat-notice`. `state` (a plain object, exposed to tests
 * on window.edgeState.chat) mirrors what is shown.
 */
export class ChatPanel {
  constructor(root, client, { me = "", staff = false, state = {} } = {}) {
    this.root = root;
    this.client = client;
    this.me = me;
    this.staff = staff;
    this.log = root.querySelector(".chat-log");
    this.form = root.querySelector(".chat-form");
    this.input = this.form.querySelector("input");
    this.sendButton = this.form.querySelector("button");
    this.notice = root.querySelector(".chat-notice");
    this.rows = new Map();
    this.mutedUntil = 0;
    this.slowmode = 0;
    this.state = Object.assign(state, {
      state: client.state, messages: [], deleted: [], errors: [], system: [], slowmode: 0, muted: [],
    });

    client.on("state", ({ state: s, detail }) => {
      this.state.state = s;
      root.dataset.state = s;
      this.updateComposer();
      if (s === "refused") this.showNotice(`Chat refused: ${detail.reason}`, "error", 0);
      else if (s === "reconnecting") this.showNotice("Chat disconnected, reconnecting…", "warn", 0);
      else if (s === "open") this.hideNotice();
    });
    client.on("welcome", (d) => this.system(d.text || `Welcome to ${d.room || client.room}`));
    client.on("chat.history", (d) => {
      this.log.replaceChildren();
      this.rows.clear();
      this.state.messages.length = 0;
      for (const m of d.messages || []) this.add(m, m.from, m.ts, false);
      this.scroll(true);
    });
    client.on("chat.message", (d, env) => this.add(d, env.from, env.ts, true));
    client.on("chat.deleted", (d) => this.remove(d.message_id));
    client.on("mod.muted", (d) => {
      if (!this.state.muted.includes(d.identity)) this.state.muted.push(d.identity);
      const until = d.until ? ` until ${formatTime(d.until)}` : "";
      this.system(`${d.identity} was muted${until}.`);
      if (d.identity === this.me) { this.mutedUntil = d.until || Date.now() + 600000; this.updateComposer(); }
      this.root.dispatchEvent(new CustomEvent("muted-changed"));
    });
    client.on("mod.unmuted", (d) => {
      this.state.muted = this.state.muted.filter((i) => i !== d.identity);
      this.system(`${d.identity} was unmuted.`);
      if (d.identity === this.me) { this.mutedUntil = 0; this.updateComposer(); }
      this.root.dispatchEvent(new CustomEvent("muted-changed"));
    });
    client.on("mod.slowmode", (d) => {
      this.slowmode = this.state.slowmode = d.seconds || 0;
      this.system(this.slowmode ? `Slow mode: one message every ${this.slowmode} s.` : "Slow mode is off.");
      this.updateComposer();
    });
    client.on("error", (d) => {
      if (client.isQuiet(d.reply_to)) return; // another panel of the page answers for it
      this.state.errors.push({ code: d.code, reason: d.reason, reply_to: d.reply_to || null });
      if (this.state.errors.length > 20) this.state.errors.shift();
      this.showNotice(describeError(d), "error");
    });

    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      if (this.client.send("chat.send", { text }) === null) {
        this.showNotice("Not connected to the chat.", "warn");
        return;
      }
      this.input.value = "";
    });
    this.log.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (!button) return;
      const row = button.closest("li");
      if (button.dataset.action === "delete") {
        this.client.send("chat.delete", { message_id: row.dataset.id });
      } else if (button.dataset.action === "mute") {
        this.client.send("mod.mute", { identity: row.dataset.identity, seconds: 600 });
      }
    });
    this.updateComposer();
  }

  scroll(force = false) {
    const nearBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    if (force || nearBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  add(data, from, ts, live) {
    const identity = (from && from.identity) || "?";
    const role = (from && from.role) || "";
    const id = data.message_id;
    if (id && this.rows.has(id)) return;
    const row = el("li", { className: `msg role-${role}${identity === this.me ? " mine" : ""}` },
      el("span", { className: "who", textContent: identity }),
      role && role !== "viewer" ? el("span", { className: "badge", textContent: role }) : null,
      el("span", { className: "text", textContent: data.text || "" }),
    );
    row.dataset.id = id || "";
    row.dataset.identity = identity;
    if (ts) row.title = formatTime(ts);
    if (this.staff && id) {
      const tools = el("span", { className: "tools" },
        el("button", { type: "button", className: "link", textContent: "Delete", dataset: { action: "delete" } }));
      if (identity !== this.me) {
        tools.append(el("button", { type: "button", className: "link", textContent: "Mute", dataset: { action: "mute" } }));
      }
      row.append(tools);
    }
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    this.log.append(row);
    if (id) this.rows.set(id, row);
    this.state.messages.push({ id, identity, role, text: data.text, ts: ts || null });
    while (this.state.messages.length > KEEP_MESSAGES) {
      const old = this.state.messages.shift();
      const oldRow = old.id && this.rows.get(old.id);
      if (oldRow) { oldRow.remove(); this.rows.delete(old.id); }
    }
    if (stick || !live) this.log.scrollTop = this.log.scrollHeight;
  }

  remove(id) {
    const row = this.rows.get(id);
    if (row) { row.remove(); this.rows.delete(id); }
    this.state.messages = this.state.messages.filter((m) => m.id !== id);
    this.state.deleted.push(id);
  }

  system(text) {
    this.state.system.push(text);
    if (this.state.system.length > 20) this.state.system.shift();
    this.log.append(el("li", { className: "system", textContent: text }));
    this.scroll();
  }

  updateComposer() {
    const open = this.client.state === "open";
    const muted = this.mutedUntil > Date.now();
    this.input.disabled = !open || muted;
    this.sendButton.disabled = !open || muted;
    this.input.placeholder = !open ? "Chat is not connected"
      : muted ? `You are muted until ${formatTime(this.mutedUntil)}`
        : this.slowmode && !this.staff ? `Say something (slow mode: ${this.slowmode} s)` : "Say something…";
    if (muted) {
      clearTimeout(this.muteTimer);
      this.muteTimer = setTimeout(() => this.updateComposer(), Math.min(this.mutedUntil - Date.now() + 50, 60000));
    }
  }

  showNotice(text, kind = "info", hideAfterMs = 6000) {
    this.notice.textContent = text;
    this.notice.dataset.kind = kind;
    this.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    if (hideAfterMs) this.noticeTimer = setTimeout(() => this.hideNotice(), hideAfterMs);
  }

  hideNotice() {
    this.notice.hidden = true;
  }
}
