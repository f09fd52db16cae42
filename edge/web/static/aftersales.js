// After-sales on the watch page (docs/aftersales.md, "Adding an after-sales entry
// point to a viewer page"): ask the room's FAQ (with a "watch how" clip of the
// recorded live), open a ticket for an order, and talk with the agents.
//
// window.edgeState.aftersales:
//   {available, open, sku, orders, tickets, reasons, answer, noMatch, ticketId, ticket,
//    messages: [{message_id, kind, text, from, at}], errors: [code]}

import { $, api, el, formatDateTime, formatTime } from "./ui.js";

const REASONS = {
  not_received: "Not received",
  damaged: "Damaged",
  wrong_item: "Wrong item",
  how_to_use: "How to use it",
  size_fit: "Size or fit",
  return_refund: "Return or refund",
  question: "A question",
  other: "Something else",
};

const ERRORS = {
  not_found: "We could not find that order or ticket.",
  ticket_closed: "This ticket is closed: open a new one if you still need help.",
  too_many_tickets: "You have too many open tickets: finish one first.",
  rate_limited: "You are sending too fast: wait a moment.",
  forbidden: "You are not allowed to do that.",
  unknown_type: "After-sales is not available on this node.",
};

const STATES = { reserved: "reserved", paid: "paid", expired: "expired", cancelled: "cancelled", refunded: "refunded" };

function clipHref(clip) {
  if (!clip || typeof clip.url !== "string") return null;
  try {
    const url = new URL(clip.url, window.location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

export class AftersalesPanel {
  /**
   * button: #aftersales-button; panel: #aftersales-panel; titleOf(order_id, sku) a
   * product title the page knows (or ""); skuNow() the pinned product's SKU.
   */
  constructor({ button, panel, client, token, room, state, titleOf = () => "", skuNow = () => null }) {
    this.button = button;
    this.panel = panel;
    this.client = client;
    this.token = token;
    this.room = room;
    this.titleOf = titleOf;
    this.skuNow = skuNow;
    this.S = state.aftersales = {
      available: null, open: false, sku: null, orders: [], tickets: [], reasons: [], answer: null, noMatch: null,
      ticketId: null, ticket: null, messages: [], errors: [], asking: false,
    };
    this.requests = new Map(); // id -> type
    const q = (s) => $(s, panel);
    this.ui = {
      close: q("#aftersales-close"), about: q("#aftersales-about"), notice: q("#aftersales-notice"),
      askForm: q("#aftersales-ask-form"), ask: q("#aftersales-ask-input"), answer: q("#aftersales-answer"),
      openBox: q("#aftersales-open-box"), openForm: q("#aftersales-open-form"), order: q("#aftersales-order"), reason: q("#aftersales-reason"),
      text: q("#aftersales-text"), tickets: q("#aftersales-tickets"), conversation: q("#aftersales-conversation"),
      ticketTitle: q("#aftersales-ticket-title"), log: q("#aftersales-log"), messageForm: q("#aftersales-message-form"),
      message: q("#aftersales-message-input"),
    };

    button.addEventListener("click", () => (this.S.open ? this.close() : this.open()));
    this.ui.close.addEventListener("click", () => this.close());
    this.ui.askForm.addEventListener("submit", (ev) => { ev.preventDefault(); this.ask(); });
    this.ui.openForm.addEventListener("submit", (ev) => { ev.preventDefault(); this.openTicket(); });
    this.ui.messageForm.addEventListener("submit", (ev) => { ev.preventDefault(); this.sendMessage(); });
    this.ui.tickets.addEventListener("click", (ev) => {
      const row = ev.target.closest("[data-ticket-id]");
      if (row) this.select(row.dataset.ticketId);
    });

    client.on("aftersales.mine", (d) => this.mine(d));
    client.on("aftersales.answer", (d) => {
      this.S.asking = false;
      this.S.answer = d;
      this.S.noMatch = null;
      this.renderAnswer();
    });
    client.on("aftersales.no_match", (d) => {
      this.S.asking = false;
      this.S.answer = null;
      this.S.noMatch = { hint: d.hint, ticket: d.ticket || null };
      this.renderAnswer();
      if (d.ticket) { this.upsertTicket(d.ticket); this.select(d.ticket.ticket_id); }
    });
    client.on("aftersales.opened", (d) => {
      this.ui.text.value = "";
      this.ui.openBox.open = false; // the conversation takes its place
      this.upsertTicket(d.ticket);
      this.select(d.ticket.ticket_id);
      this.hideNotice();
    });
    client.on("aftersales.history", (d) => {
      if (!d.ticket || d.ticket.ticket_id !== this.S.ticketId) return;
      this.S.ticket = d.ticket;
      this.upsertTicket(d.ticket);
      this.S.messages = [];
      for (const m of d.messages || []) this.addMessage(m);
      this.renderConversation();
      if (this.S.open) this.ui.conversation.scrollIntoView({ block: "nearest", behavior: "smooth" });
    });
    client.on("aftersales.message", (d) => {
      if (d.ticket_id === this.S.ticketId) {
        this.addMessage(d);
        this.renderConversation();
      } else if (d.kind === "agent") {
        this.button.dataset.unread = "true";
      }
    });
    client.on("aftersales.ticket", (d) => {
      if (!d.ticket) return;
      this.upsertTicket(d.ticket);
      if (d.ticket.ticket_id === this.S.ticketId) {
        this.S.ticket = d.ticket;
        if (d.message) this.addMessage(d.message);
        this.renderConversation();
      }
      if (!this.S.open && d.event !== "opened") this.button.dataset.unread = "true";
    });
    client.on("aftersales.sent", (d) => { if (!d.closed) this.ui.message.value = ""; });
    client.on("error", (d) => {
      const type = d.reply_to && this.requests.get(d.reply_to);
      if (!type) return;
      this.requests.delete(d.reply_to);
      if (type === "aftersales.ask") this.S.asking = false;
      this.S.errors.push(d.code);
      this.notice(ERRORS[d.code] || d.reason || d.code);
      this.renderAnswer();
    });
    client.on("state", ({ state }) => {
      // After a reconnect: the orders and the conversation may have moved on.
      if (state === "open" && this.S.open) {
        this.send("aftersales.mine", {});
        if (this.S.ticketId) this.send("aftersales.history", { ticket_id: this.S.ticketId });
      }
    });
  }

  /** Shows the button when the node has the aftersales plugin (the room's FAQ answers). */
  async probe() {
    try {
      await api(`/v1/plugins/aftersales/rooms/${encodeURIComponent(this.room)}/faq`, this.token);
      this.S.available = true;
      this.button.hidden = false;
    } catch (err) {
      this.S.available = false;
      this.button.hidden = true;
    }
    return this.S.available;
  }

  send(type, data) {
    const id = this.client.send(type, data, { quiet: true });
    if (id === null) { this.notice("Not connected: try again in a moment."); return null; }
    this.requests.set(id, type);
    if (this.requests.size > 100) this.requests.delete(this.requests.keys().next().value);
    return id;
  }

  open(sku = null) {
    if (sku) this.S.sku = sku;
    this.S.open = true;
    this.panel.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    delete this.button.dataset.unread;
    this.renderAbout();
    if (this.client.state === "open") this.send("aftersales.mine", {});
    this.panel.scrollIntoView({ block: "nearest", behavior: "smooth" });
    this.ui.ask.focus({ preventScroll: true });
  }

  close() {
    this.S.open = false;
    this.panel.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
  }

  /** The product questions are about: ?service=<sku>, else the pinned one. */
  sku() {
    return this.S.sku || this.skuNow() || null;
  }

  renderAbout() {
    const sku = this.sku();
    this.ui.about.hidden = !sku;
    this.ui.about.textContent = sku ? `About ${this.titleOf(null, sku) || sku}` : "";
  }

  mine(d) {
    this.S.orders = d.orders || [];
    this.S.tickets = d.tickets || [];
    this.S.reasons = d.reasons || [];
    const { order, reason } = this.ui;
    const chosen = order.value;
    if (!this.S.orders.length) {
      order.replaceChildren(el("option", { value: "", textContent: "No orders yet", disabled: true, selected: true }));
    } else {
      order.replaceChildren(...this.S.orders.map((o) => el("option", {
        value: o.order_id,
        textContent: [this.titleOf(o.order_id, o.sku) || o.sku, STATES[o.state] || o.state, formatDateTime(o.at)].filter(Boolean).join(" · "),
      })));
      const preferred = this.S.orders.find((o) => o.order_id === chosen)
        || (this.sku() && this.S.orders.find((o) => o.sku === this.sku())) || this.S.orders[0];
      order.value = preferred.order_id;
    }
    const pickedReason = reason.value;
    reason.replaceChildren(...this.S.reasons.map((r) => el("option", { value: r, textContent: REASONS[r] || r.replace(/_/g, " ") })));
    if (pickedReason && this.S.reasons.includes(pickedReason)) reason.value = pickedReason;
    this.ui.openForm.querySelector("button[type=submit]").disabled = !this.S.orders.length;
    this.renderTickets();
    this.renderAbout();
  }

  upsertTicket(ticket) {
    const i = this.S.tickets.findIndex((t) => t.ticket_id === ticket.ticket_id);
    if (i >= 0) this.S.tickets[i] = ticket;
    else this.S.tickets.unshift(ticket);
    this.renderTickets();
  }

  renderTickets() {
    const tickets = this.S.tickets;
    // A list only when there is something to choose: not for the one ticket already shown.
    this.ui.tickets.hidden = !tickets.length || (tickets.length === 1 && tickets[0].ticket_id === this.S.ticketId);
    this.ui.tickets.replaceChildren(...tickets.map((t) => el("li", {
      className: `ticket-row${t.ticket_id === this.S.ticketId ? " current" : ""}`, dataset: { ticketId: t.ticket_id, status: t.status },
    },
    el("button", { type: "button", className: "link" },
      el("strong", { textContent: REASONS[t.reason] || t.reason }),
      el("span", { className: "muted", textContent: ` · ${this.titleOf(t.order_id, t.sku) || t.sku} · ${t.status}${t.awaiting === "buyer" ? " · answered" : ""}` })))));
  }

  select(ticketId) {
    this.S.ticketId = ticketId;
    this.S.ticket = this.S.tickets.find((t) => t.ticket_id === ticketId) || null;
    this.S.messages = [];
    this.renderConversation();
    this.renderTickets();
    this.send("aftersales.history", { ticket_id: ticketId });
  }

  addMessage(m) {
    if (!m || (m.message_id && this.S.messages.some((x) => x.message_id === m.message_id))) return;
    this.S.messages.push({ message_id: m.message_id, kind: m.kind, text: m.text, from: m.from || null, at: m.at });
  }

  renderConversation() {
    const ticket = this.S.ticket;
    this.ui.conversation.hidden = !this.S.ticketId;
    if (!this.S.ticketId) return;
    const status = ticket ? ticket.status : "";
    this.ui.ticketTitle.textContent = ticket
      ? `${REASONS[ticket.reason] || ticket.reason} · ${this.titleOf(ticket.order_id, ticket.sku) || ticket.sku} · ${status}`
      : "Ticket";
    this.ui.conversation.dataset.status = status;
    const rows = this.S.messages.map((m) => el("li", { className: `as-msg kind-${m.kind}`, dataset: { messageId: m.message_id || "" } },
      el("span", { className: "who", textContent: m.kind === "buyer" ? "You" : (m.from && m.from.identity) || "Agent" }),
      el("span", { className: "text", textContent: m.text }),
      m.at ? el("time", { className: "muted", textContent: formatTime(m.at * 1000) }) : null));
    if (ticket && ticket.status === "closed") {
      rows.push(el("li", { className: "system", textContent: `Closed${ticket.resolution ? `: ${ticket.resolution}` : ""}` }));
    } else if (ticket && ticket.awaiting === "agent" && this.S.messages.length) {
      rows.push(el("li", { className: "system", textContent: "An agent will answer here." }));
    }
    this.ui.log.replaceChildren(...rows);
    this.ui.log.scrollTop = this.ui.log.scrollHeight;
    const closed = !!ticket && ticket.status === "closed";
    this.ui.message.disabled = closed;
    this.ui.messageForm.querySelector("button").disabled = closed;
    this.ui.message.placeholder = closed ? "This ticket is closed" : "Write to the agent…";
  }

  ask() {
    const text = this.ui.ask.value.trim();
    if (!text) return;
    const data = { text };
    const sku = this.sku();
    if (sku) data.sku = sku;
    if (this.send("aftersales.ask", data) === null) return;
    this.S.asking = true;
    this.S.answer = null;
    this.S.noMatch = null;
    this.hideNotice();
    this.renderAnswer();
  }

  renderAnswer() {
    const box = this.ui.answer;
    const { answer, noMatch, asking } = this.S;
    if (asking) {
      box.dataset.kind = "pending";
      box.replaceChildren(el("p", { className: "muted", textContent: "Looking for an answer…" }));
    } else if (answer) {
      box.dataset.kind = "answer";
      const href = clipHref(answer.clip);
      box.replaceChildren(
        el("p", { className: "as-question muted", textContent: answer.question }),
        el("p", { className: "as-answer", textContent: answer.answer }),
        href ? el("a", { id: "aftersales-clip", className: "clip-link", href, target: "_blank", rel: "noopener", textContent: "▶ Watch how in the replay" }) : null,
      );
    } else if (noMatch) {
      box.dataset.kind = "no_match";
      box.replaceChildren(el("p", {
        className: "as-hint",
        textContent: noMatch.ticket
          ? "No ready answer for that: we opened a ticket and an agent will answer you below."
          : "No ready answer for that. Open a ticket for your order below and an agent will answer.",
      }));
    } else {
      box.replaceChildren();
    }
    box.hidden = !asking && !answer && !noMatch;
  }

  openTicket() {
    const orderId = this.ui.order.value;
    const reason = this.ui.reason.value;
    const text = this.ui.text.value.trim();
    if (!orderId) { this.notice("Choose one of your orders."); return; }
    if (!text) { this.notice("Tell us what happened."); this.ui.text.focus(); return; }
    this.send("aftersales.open", { order_id: orderId, reason, text });
  }

  sendMessage() {
    const text = this.ui.message.value.trim();
    if (!text || !this.S.ticketId) return;
    this.send("aftersales.message", { ticket_id: this.S.ticketId, text });
  }

  notice(text) {
    this.ui.notice.textContent = text;
    this.ui.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => this.hideNotice(), 8000);
  }

  hideNotice() {
    this.ui.notice.hidden = true;
  }
}
