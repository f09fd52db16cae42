// Commerce on the pages (docs/commerce.md, "What the pages need").
//
// ProductCard (watch page): the pinned product card with its countdown, a buy
// button (order.place with one idempotency key per tap, reused on retry), the
// buyer's orders and their state, sold-out state from commerce's and the
// flashsale plugin's stock envelopes, flash-sale countdowns, product.click.
//
// CommerceConsole (host page): the room's catalog with pin buttons, a pin
// countdown, unpin, a small add-product form and the room's numbers.

import { $, api, el, formatClock, formatCount, formatPrice, toast } from "./ui.js";

const ORDER_TEXT = {
  reserved: "Reserved — paying…",
  paid: "Paid",
  expired: "Expired: not paid in time",
  cancelled: "Cancelled",
  refunded: "Refunded",
};

const REJECT_TEXT = {
  sold_out: "Sold out",
  insufficient_stock: "Not enough left",
  not_found: "This product is no longer available",
  idempotency_conflict: "That order was already placed differently",
  not_started: "The sale has not started yet",
  ended: "The sale has ended",
  over_limit: "That is more than one buyer may take",
  limit_reached: "You reached this sale's limit",
  unavailable: "Ordering is unavailable right now, try again",
  forbidden: "Only viewers can order",
  rate_limited: "Too many orders at once: wait a moment",
  invalid_data: "That order was not accepted",
  network: "No answer from the node: tap Retry",
};

const ANSWER_TIMEOUT_MS = 15000;

/** A fresh idempotency key (letters, digits and '-': the node's key rule). */
export function newKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function safeUrl(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return ["https:", "http:", "data:", "blob:"].includes(parsed.protocol) ? parsed.href : null;
  } catch (_) {
    return null;
  }
}

/** countdown: seconds left when the envelope was sent (or, if huge, an epoch-ms deadline). */
function deadline(countdown, ts) {
  if (typeof countdown !== "number" || !Number.isFinite(countdown) || countdown <= 0) return null;
  if (countdown > 1e11) return countdown;
  return (ts || Date.now()) + countdown * 1000;
}

function rejectText(reason, data = {}) {
  const text = REJECT_TEXT[reason] || (reason || "refused").replace(/_/g, " ");
  return typeof data.available === "number" ? `${text} (${data.available} left)` : text;
}

// -- watch page -------------------------------------------------------------------------------

export class ProductCard {
  /**
   * root: #product-card; status: #order-status; state: window.edgeState
   * (product, orders, order, sales are kept there); onPaid(order) after a payment.
   */
  constructor({ root, status, client, state, onPaid = () => {} }) {
    this.root = root;
    this.status = status;
    this.client = client;
    this.S = state;
    this.onPaid = onPaid;
    this.S.product = null;
    this.S.orders = [];
    this.S.order = null;          // the purchase in flight: {key, sku, sentId, stalled}
    this.S.lastRejection = null;
    this.S.sales = {};            // flash sales by SKU: {sale_id, state, starts_at, ends_at, remaining}
    this.clickedSku = null;       // product.click once per pin
    this.timer = null;
    this.answerTimer = null;
    this.ui = {};

    client.on("product.pinned", (d, env) => this.show(d, env));
    client.on("product.unpinned", (d) => this.hide(d));
    client.on("stock.updated", (d) => this.stock(d));
    client.on("sold_out", (d) => this.soldOut(d.sku, 0));
    client.on("sale.info", (d) => this.sale(d, d.state));
    client.on("sale.countdown", (d) => this.sale(d, "scheduled"));
    client.on("sale.started", (d) => this.sale(d, "live"));
    client.on("sale.ended", (d) => this.sale(d, "ended"));
    client.on("order.accepted", (d) => this.accepted(d));
    client.on("order.rejected", (d) => this.rejected(d));
    client.on("order.updated", (d) => this.updated(d));
    client.on("error", (d) => {
      const pending = this.S.order;
      if (pending && d.reply_to && d.reply_to === pending.sentId) {
        this.finish();
        this.showRejection({ sku: pending.sku, reason: d.code, detail: d.reason });
      }
    });
    client.on("state", ({ state }) => {
      // A purchase still waiting for its answer is sent again with the same key.
      if (state === "open" && this.S.order) this.send();
      this.render();
    });
    root.addEventListener("click", () => this.tapped());
  }

  // -- the card ----------------------------------------------------------------------------------

  show(data, envelope) {
    const previous = this.S.product;
    if (!previous || previous.sku !== data.sku) this.clickedSku = null;
    const soldOut = data.sold_out === true || data.stock === 0;
    this.S.product = { ...data, sold_out: soldOut, secondsLeft: undefined };
    this.ends = deadline(data.countdown, envelope && envelope.ts);
    const image = data.image_url ? safeUrl(data.image_url) : null;
    const ui = this.ui = {
      kicker: el("span", { className: "product-kicker" }),
      countdown: el("span", { className: "countdown", hidden: true }),
      sale: el("span", { className: "sale-countdown", hidden: true }),
      stock: el("span", { className: "product-stock", hidden: true }),
      soldout: el("span", { className: "product-soldout", textContent: "Sold out", hidden: true }),
      buy: el("button", { id: "buy-button", type: "button", className: "buy-button primary" }),
    };
    this.root.replaceChildren(
      image ? el("img", { src: image, alt: "", loading: "lazy", referrerPolicy: "no-referrer" }) : el("div", { className: "img-placeholder" }),
      el("div", { className: "product-body" },
        ui.kicker,
        el("strong", { className: "product-title", textContent: data.title || data.sku || "Product" }),
        el("span", { className: "product-price", textContent: formatPrice(data.price, data.currency) }),
        el("span", { className: "product-meta" }, ui.countdown, ui.sale, ui.stock, ui.soldout)),
      ui.buy,
    );
    ui.buy.addEventListener("click", () => this.buy());
    this.root.dataset.sku = data.sku || "";
    this.root.hidden = false;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 250);
    this.render();
  }

  hide(data) {
    const product = this.S.product;
    if (data && data.sku && product && product.sku && data.sku !== product.sku) return;
    clearInterval(this.timer);
    this.S.product = null;
    this.clickedSku = null;
    this.ends = null;
    this.root.hidden = true;
    this.root.replaceChildren();
    delete this.root.dataset.soldOut;
    this.ui = {};
  }

  /** The flash sale running (or about to) for the pinned SKU, if any. */
  saleOf(sku) {
    const sale = sku ? this.S.sales[sku] : null;
    return sale && sale.state !== "ended" ? sale : null;
  }

  tick() {
    const product = this.S.product;
    if (!product || !this.ui.countdown) return;
    const now = Date.now();
    const sale = this.saleOf(product.sku);
    // The pin's own countdown, else the live sale's end.
    const ends = this.ends || (sale && sale.state === "live" && sale.ends_at ? sale.ends_at : null);
    if (ends) {
      const left = Math.max(0, Math.round((ends - now) / 1000));
      product.secondsLeft = left;
      this.ui.countdown.textContent = left ? `Ends in ${formatClock(left)}` : "Ended";
      this.ui.countdown.classList.toggle("ending", left > 0 && left <= 10);
      this.ui.countdown.hidden = false;
    } else {
      this.ui.countdown.hidden = true;
    }
    if (sale && sale.state === "scheduled" && sale.starts_at) {
      const wait = Math.max(0, Math.round((sale.starts_at - now) / 1000));
      product.saleStartsIn = wait;
      this.ui.sale.textContent = wait ? `Sale starts in ${formatClock(wait)}` : "Sale starting…";
      this.ui.sale.hidden = false;
    } else {
      product.saleStartsIn = undefined;
      this.ui.sale.hidden = true;
    }
  }

  render() {
    const product = this.S.product;
    const { buy } = this.ui;
    if (!product || !buy) return;
    const sale = this.saleOf(product.sku);
    const flash = !!product.flash_sale || (sale && sale.state === "live");
    const soldOut = !!product.sold_out;
    const pending = this.S.order;
    const waiting = sale && sale.state === "scheduled";
    this.ui.kicker.textContent = flash ? "Flash sale" : waiting ? "Coming up" : "Pinned";
    this.ui.kicker.classList.toggle("flash", !!flash);
    this.root.dataset.soldOut = soldOut ? "true" : "false";
    this.ui.soldout.hidden = !soldOut;
    const stock = typeof product.stock === "number" ? product.stock : null;
    this.ui.stock.hidden = soldOut || stock === null || stock > 20;
    this.ui.stock.textContent = stock !== null ? `Only ${stock} left` : "";
    const open = this.client.state === "open";
    buy.disabled = soldOut || !!(pending && !pending.stalled) || !open || !!waiting;
    buy.textContent = soldOut ? "Sold out" : pending ? (pending.stalled ? "Retry" : "Ordering…") : waiting ? "Soon" : "Buy";
    buy.setAttribute("aria-busy", pending && !pending.stalled ? "true" : "false");
    this.tick();
  }

  tapped() {
    const product = this.S.product;
    if (!product || !product.sku || this.clickedSku === product.sku) return;
    if (this.client.send("product.click", { sku: product.sku }, { quiet: true }) !== null) this.clickedSku = product.sku;
  }

  // -- stock -------------------------------------------------------------------------------------

  stock(data) {
    const product = this.S.product;
    if (!product || data.sku !== product.sku) return;
    const fromSale = "sale_id" in data;
    const sale = this.S.sales[data.sku];
    if (fromSale) {
      if (sale) sale.remaining = data.remaining;
      // The sale's units are what a buyer can get while the card is the sale's.
      if (!product.flash_sale && !(sale && sale.state === "live")) return;
      product.stock = data.remaining;
      product.sold_out = data.remaining === 0;
    } else {
      if (product.flash_sale) return; // the catalog's stock does not sell this card
      product.stock = typeof data.stock === "number" ? data.stock : data.remaining;
      product.sold_out = data.sold_out === true || product.stock === 0;
    }
    this.render();
  }

  soldOut(sku, remaining) {
    const sale = this.S.sales[sku];
    if (sale) sale.remaining = remaining;
    const product = this.S.product;
    if (!product || product.sku !== sku) return;
    product.stock = remaining;
    product.sold_out = true;
    this.render();
  }

  sale(data, state) {
    if (!data || !data.sku) return;
    const current = this.S.sales[data.sku] || {};
    const sale = this.S.sales[data.sku] = {
      ...current, sale_id: data.sale_id, state: state || current.state,
      starts_at: data.starts_at || current.starts_at, ends_at: data.ends_at || current.ends_at,
      remaining: typeof data.remaining === "number" ? data.remaining : current.remaining,
    };
    const product = this.S.product;
    if (product && product.sku === data.sku) {
      if (state === "live" && typeof sale.remaining === "number") {
        product.stock = sale.remaining;
        product.sold_out = sale.remaining === 0;
      }
      this.render();
    }
  }

  // -- buying -----------------------------------------------------------------------------------

  buy() {
    const product = this.S.product;
    if (!product || product.sold_out) return;
    const pending = this.S.order;
    if (pending && !pending.stalled) return;
    // One key per purchase intent: a retry of a purchase that got no answer reuses it.
    this.S.order = pending && pending.sku === product.sku ? { ...pending, stalled: false }
      : { key: newKey(), sku: product.sku, sentId: null, stalled: false };
    this.send();
    this.render();
  }

  send() {
    const pending = this.S.order;
    if (!pending) return;
    pending.sentId = this.client.send("order.place", { sku: pending.sku, quantity: 1, key: pending.key }, { quiet: true });
    pending.stalled = false;
    clearTimeout(this.answerTimer);
    this.answerTimer = setTimeout(() => {
      if (this.S.order !== pending) return;
      pending.stalled = true;
      this.showRejection({ sku: pending.sku, reason: "network" }, false);
      this.render();
    }, ANSWER_TIMEOUT_MS);
    if (pending.sentId === null) this.setStatus("pending", "Connecting to place your order…");
    else this.setStatus("pending", "Placing your order…");
  }

  finish() {
    clearTimeout(this.answerTimer);
    this.S.order = null;
    this.render();
  }

  ours(data) {
    return this.S.order && data.key && data.key === this.S.order.key;
  }

  upsert(fields) {
    let order = this.S.orders.find((o) => o.order_id === fields.order_id);
    if (!order) {
      order = { order_id: fields.order_id, sku: fields.sku, state: null, amount: null, currency: null, history: [] };
      this.S.orders.unshift(order);
    }
    for (const key of ["sku", "amount", "currency", "quantity", "title"]) {
      if (fields[key] !== undefined && fields[key] !== null) order[key] = fields[key];
    }
    if (fields.state && fields.state !== order.state) {
      order.state = fields.state;
      order.history.push(fields.state);
    }
    return order;
  }

  accepted(data) {
    if (this.ours(data)) this.finish();
    const product = this.S.product;
    const title = product && product.sku === data.sku ? product.title : undefined;
    const order = this.upsert({ ...data, state: data.state || "reserved", title });
    this.S.lastRejection = null;
    this.showOrder(order);
  }

  rejected(data) {
    if (this.ours(data)) this.finish();
    this.showRejection(data);
    if (data.reason === "sold_out") this.soldOut(data.sku, 0);
  }

  updated(data) {
    const order = this.upsert(data);
    this.showOrder(order);
    if (data.state === "paid") {
      toast(`Payment confirmed${order.title ? `: ${order.title}` : ""}`, "info", 4000);
      this.onPaid(order);
    }
  }

  showOrder(order) {
    const price = order.amount !== null ? formatPrice(order.amount, order.currency) : "";
    const what = [order.title || order.sku, price].filter(Boolean).join(" · ");
    this.setStatus(order.state, ORDER_TEXT[order.state] || order.state, what);
  }

  showRejection(data, record = true) {
    if (record) this.S.lastRejection = { sku: data.sku, reason: data.reason, detail: data.detail || null };
    const text = rejectText(data.reason, data);
    this.setStatus("rejected", `Not ordered: ${text}`, data.sku || "");
    this.status.dataset.reason = data.reason || "";
  }

  setStatus(state, text, detail = "") {
    this.status.dataset.state = state;
    delete this.status.dataset.reason;
    this.status.replaceChildren(
      el("span", { className: "order-state", textContent: text }),
      detail ? el("span", { className: "order-detail", textContent: detail }) : null,
    );
    this.status.hidden = false;
  }
}

// -- host page --------------------------------------------------------------------------------

function percent(ratio) {
  return `${(Number(ratio || 0) * 100).toFixed(1)}%`;
}

export class CommerceConsole {
  /** root: #commerce (hidden until the catalog loads: no commerce plugin, no card). */
  constructor({ root, client, token, room, state }) {
    this.root = root;
    this.client = client;
    this.token = token;
    this.room = room;
    this.S = state;
    this.S.commerce = { available: null, currency: null, error: null };
    this.S.products = [];
    this.S.pinned = null;
    this.S.stats = null;
    this.base = `/v1/plugins/commerce/rooms/${encodeURIComponent(room)}`;
    this.ui = {
      list: $("#product-list", root), countdown: $("#pin-countdown", root), unpin: $("#unpin-button", root),
      pinned: $("#pinned-product", root), notice: $("#commerce-notice", root), form: $("#product-form", root),
      stats: $("#commerce-stats", root), refresh: $("#stats-refresh", root),
    };
    this.statsTimer = null;
    this.pinIds = new Set();

    this.ui.list.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action=pin]");
      if (button) this.pin(button.closest("[data-sku]").dataset.sku);
    });
    this.ui.unpin.addEventListener("click", () => this.unpin());
    this.ui.form.addEventListener("submit", (ev) => { ev.preventDefault(); this.add(); });
    this.ui.refresh.addEventListener("click", () => this.loadStats());
    client.on("product.pinned", (d) => { this.S.pinned = { ...d }; this.renderPinned(); });
    client.on("product.unpinned", (d) => {
      if (!this.S.pinned || !d.sku || d.sku === this.S.pinned.sku) this.S.pinned = null;
      this.renderPinned();
    });
    client.on("stock.updated", (d) => this.stock(d));
    client.on("sold_out", (d) => this.stock({ ...d, sale_id: d.sale_id, remaining: 0 }));
    client.on("error", (d) => {
      if (d.reply_to && this.pinIds.has(d.reply_to)) this.notice(`${d.code}: ${d.reason || ""}`, "error");
    });
    client.on("state", ({ state }) => { this.ui.unpin.disabled = state !== "open" || !this.S.pinned; });
  }

  async load() {
    let data;
    try {
      data = await api(`${this.base}/products`, this.token);
    } catch (err) {
      this.S.commerce.available = false;
      this.S.commerce.error = err.message;
      // 404: the node has no commerce plugin; the card stays hidden.
      if (err.status !== 404) { this.root.hidden = false; this.notice(`Products: ${err.message}`, "error"); }
      return;
    }
    this.S.commerce.available = true;
    this.S.commerce.currency = data.currency;
    this.S.products = data.products || [];
    const currency = this.ui.form.elements.currency;
    if (!currency.value) currency.value = data.currency || "USD";
    this.root.hidden = false;
    this.renderList();
    this.loadPin();
    this.loadStats();
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => { if (!document.hidden) this.loadStats(); }, 10000);
  }

  async loadPin() {
    try {
      const data = await api(`${this.base}/pin`, this.token);
      if (data && this.S.pinned === null && data.pinned) { this.S.pinned = data.pinned; this.renderPinned(); }
    } catch (_) { /* the broadcast tells us as well */ }
  }

  async loadStats() {
    try {
      this.S.stats = await api(`${this.base}/stats`, this.token);
    } catch (err) {
      this.ui.stats.dataset.error = err.message;
      return;
    }
    const s = this.S.stats;
    const cells = [
      ["Views", formatCount(s.views), "views"],
      ["Clicks", formatCount(s.clicks), "clicks"],
      ["CTR", percent(s.ctr), "ctr"],
      ["Orders", formatCount(s.orders), "orders"],
      ["GMV", formatPrice(s.gmv, s.currency), "gmv"],
      ["GPM", formatPrice(s.gpm, s.currency), "gpm"],
    ];
    this.ui.stats.replaceChildren(...cells.map(([label, value, key]) =>
      el("div", { dataset: { stat: key } }, el("dt", { textContent: label }), el("dd", { textContent: value }))));
  }

  scheduleStats() {
    clearTimeout(this.statsSoon);
    this.statsSoon = setTimeout(() => this.loadStats(), 1500);
  }

  renderList() {
    const products = this.S.products;
    if (!products.length) {
      this.ui.list.replaceChildren(el("li", { className: "muted empty", textContent: "No products yet: add one below." }));
      return;
    }
    this.ui.list.replaceChildren(...products.map((p) => {
      const image = p.image_url ? safeUrl(p.image_url) : null;
      return el("li", { className: "product-row", dataset: { sku: p.sku } },
        image ? el("img", { src: image, alt: "", loading: "lazy", referrerPolicy: "no-referrer" }) : el("div", { className: "img-placeholder" }),
        el("div", { className: "product-row-body" },
          el("strong", { textContent: p.title }),
          el("span", { className: "muted", textContent: `${p.sku} · ${formatPrice(p.display_price ?? p.price, p.display_currency || p.currency)}` }),
          el("span", { className: "stock", textContent: "" })),
        el("button", { type: "button", className: "pin-button", textContent: "Pin", dataset: { action: "pin" } }));
    }));
    this.renderPinned();
  }

  renderPinned() {
    const pinned = this.S.pinned;
    for (const row of this.ui.list.querySelectorAll("[data-sku]")) {
      const product = this.S.products.find((p) => p.sku === row.dataset.sku);
      const isPinned = !!pinned && pinned.sku === row.dataset.sku;
      row.classList.toggle("pinned", isPinned);
      const button = row.querySelector("button[data-action=pin]");
      button.textContent = isPinned ? "Re-pin" : "Pin";
      const stock = row.querySelector(".stock");
      if (product) {
        stock.textContent = product.sold_out || product.stock === 0 ? "Sold out" : `${product.stock} in stock`;
        stock.classList.toggle("soldout", !!product.sold_out || product.stock === 0);
      }
    }
    this.ui.unpin.disabled = !pinned || this.client.state !== "open";
    this.ui.pinned.textContent = pinned ? `Pinned: ${pinned.title || pinned.sku}` : "Nothing pinned";
    this.ui.pinned.dataset.sku = pinned ? pinned.sku : "";
  }

  stock(data) {
    const product = this.S.products.find((p) => p.sku === data.sku);
    if (product && !("sale_id" in data)) {
      product.stock = data.stock;
      product.sold_out = !!data.sold_out;
      this.renderPinned();
    }
    if (this.S.pinned && this.S.pinned.sku === data.sku) {
      this.S.pinned.stock = "sale_id" in data ? data.remaining : data.stock;
      this.S.pinned.sold_out = "sale_id" in data ? data.remaining === 0 : !!data.sold_out;
    }
    this.scheduleStats();
  }

  pin(sku) {
    const raw = this.ui.countdown.value.trim();
    const data = { sku };
    if (raw) {
      const seconds = Number(raw);
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86400) {
        this.notice("The countdown is whole seconds from 1 to 86400 (or empty for none).", "error");
        return;
      }
      data.countdown = seconds;
    }
    const id = this.client.send("product.pin", data, { quiet: true });
    if (id === null) { this.notice("Not connected: try again in a moment.", "warn"); return; }
    this.pinIds.add(id);
    this.hideNotice();
  }

  unpin() {
    const id = this.client.send("product.unpin", {}, { quiet: true });
    if (id === null) { this.notice("Not connected: try again in a moment.", "warn"); return; }
    this.pinIds.add(id);
  }

  async add() {
    const form = this.ui.form;
    const f = form.elements;
    const body = {
      sku: f.sku.value.trim(), title: f.title.value.trim(), price: f.price.value.trim(),
      currency: f.currency.value.trim().toUpperCase(), stock: Number(f.stock.value || 0),
    };
    if (f.image_url.value.trim()) body.image_url = f.image_url.value.trim();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const product = await api(`${this.base}/products`, this.token, { method: "POST", body });
      this.S.products = [...this.S.products.filter((p) => p.sku !== product.sku), product];
      this.renderList();
      for (const name of ["sku", "title", "price", "stock", "image_url"]) f[name].value = "";
      this.notice(`Added ${product.title}.`, "ok");
    } catch (err) {
      this.notice(`Could not add the product: ${err.message}`, "error");
    } finally {
      submit.disabled = false;
    }
  }

  notice(text, kind = "info") {
    this.ui.notice.textContent = text;
    this.ui.notice.dataset.kind = kind;
    this.ui.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => this.hideNotice(), kind === "error" ? 8000 : 4000);
  }

  hideNotice() {
    this.ui.notice.hidden = true;
  }
}
