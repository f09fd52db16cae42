// Segments on the pages (docs/segments.md): coupons, live polls, verifiable
// draws (lotteries), referrals and the segment notifications.
//
// ViewerEngage (watch page)
//   edgeState.coupons   [{code, reason, sku, percent_off, expires_at, text, dismissed}]
//   edgeState.polls     {poll_id: {question, options, counts, total, closed, voted}}
//   edgeState.draws     {draw_id: {title, winners_wanted, commitment, seed, winners, participants, won, verified}}
//   edgeState.referral  null | {referrer, status} | {referrer, error}
//   edgeState.notices   [{kind, text, url}] (segments.* notifications)
// HostEngage (host page): start and close polls, create and run draws, and verify
//   a draw's result in the browser (SHA-256 of the seed = commitment; the winners
//   recomputed from the seed and the published participants).

import { $, api, el, formatCount, formatDateTime, toast } from "./ui.js";

const SEGMENTS = "/v1/plugins/segments";

const COUPON_TITLE = {
  welcome: "Welcome gift",
  targeted: "Just for you",
  referral_invitee: "Thanks for joining",
  referral_referrer: "Thanks for the invite",
};

const ERROR_TEXT = {
  already_voted: "You already voted in this poll.",
  poll_closed: "This poll is closed.",
  not_found: "That no longer exists.",
  too_many_polls: "Close a poll before starting another (5 at most).",
  no_participants: "No viewer is present to take part.",
  already_run: "This draw was run already.",
  invalid_data: "That was not accepted",
  rate_limited: "Too fast: wait a moment.",
  forbidden: "Not allowed for your role.",
  unknown_type: "This node has no polls or draws (segments plugin).",
};

function errorText(d) {
  const known = ERROR_TEXT[d.code];
  return known ? (d.code === "invalid_data" ? `${known}: ${d.reason}` : known) : `${d.code}: ${d.reason || ""}`;
}

// -- draw verification --------------------------------------------------------------------------

function hexBytes(hex) {
  if (!/^([0-9a-f]{2})+$/i.test(hex)) throw new Error("not hex");
  return new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
}

async function sha256Hex(data) {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Python's str order (by code point), not JavaScript's (by UTF-16 unit). */
function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * docs/segments.md "Draws": true when SHA-256(seed) is the commitment and the
 * winners are what the seed gives for the participants; null when this browser
 * cannot compute SHA-256 (no secure context).
 */
export async function verifyDraw({ seed, commitment, participants, winners }) {
  if (!window.crypto || !crypto.subtle) return null;
  try {
    if ((await sha256Hex(hexBytes(seed))) !== commitment) return false;
    const remaining = [...new Set(participants)].sort(byCodePoint);
    const chosen = [];
    const k = Math.min(winners.length, remaining.length);
    for (let r = 0; r < k; r += 1) {
      const digest = await sha256Hex(`${seed}:${r}:${remaining.join("\n")}`);
      const index = Number(BigInt(`0x${digest}`) % BigInt(remaining.length));
      chosen.push(remaining.splice(index, 1)[0]);
    }
    return chosen.length === winners.length && chosen.every((w, i) => w === winners[i]);
  } catch (_) {
    return false;
  }
}

function short(hex) {
  return hex ? `${hex.slice(0, 10)}…${hex.slice(-6)}` : "";
}

// -- polls (both pages) ------------------------------------------------------------------------------

function pollView(poll, { canVote, canClose }) {
  const total = poll.total || 0;
  const showResults = !canVote || poll.voted !== null || poll.closed;
  const item = el("li", { className: `poll${poll.closed ? " closed" : ""}`, dataset: { pollId: poll.poll_id } },
    el("div", { className: "poll-head" },
      el("strong", { className: "poll-question", textContent: poll.question }),
      el("span", { className: "poll-total muted", textContent: `${formatCount(total)} vote${total === 1 ? "" : "s"}${poll.closed ? " · closed" : ""}` })));
  const options = el("div", { className: "poll-options" });
  poll.options.forEach((text, i) => {
    const count = (poll.counts || [])[i] || 0;
    const share = total ? Math.round((count / total) * 100) : 0;
    const mine = poll.voted === i;
    const label = el("span", { className: "poll-option-text", textContent: text });
    const result = showResults ? el("span", { className: "poll-option-result", textContent: `${share}%` }) : null;
    const bar = el("span", { className: "poll-bar", "aria-hidden": "true" });
    bar.style.setProperty("--share", showResults ? `${share}%` : "0%");
    const button = el("button", {
      type: "button", className: `poll-option${mine ? " mine" : ""}`, disabled: !canVote || poll.voted !== null || poll.closed,
      dataset: { option: String(i) },
    }, bar, label, result);
    options.append(button);
  });
  item.append(options);
  if (canClose && !poll.closed) {
    item.append(el("button", { type: "button", className: "link", textContent: "Close poll", dataset: { action: "close-poll" } }));
  }
  return item;
}

function mergePoll(polls, d) {
  const poll = polls[d.poll_id] || { poll_id: d.poll_id, voted: null, counts: [], total: 0, closed: false };
  Object.assign(poll, {
    question: d.question ?? poll.question, options: d.options ?? poll.options,
    counts: d.counts ?? (poll.counts.length ? poll.counts : (d.options || []).map(() => 0)),
    total: d.total ?? poll.total, closed: d.closed ?? poll.closed,
  });
  polls[d.poll_id] = poll;
  return poll;
}

// -- draws (both pages) -------------------------------------------------------------------------------

function drawView(draw, { me, canRun }) {
  const item = el("li", { className: "draw", dataset: { drawId: draw.draw_id, status: draw.seed ? "drawn" : "committed" } },
    el("div", { className: "poll-head" },
      el("strong", { className: "draw-title", textContent: `Draw: ${draw.title}` }),
      el("span", { className: "muted", textContent: `${draw.winners_wanted || 1} winner${(draw.winners_wanted || 1) === 1 ? "" : "s"}` })));
  const proof = el("dl", { className: "draw-proof" },
    el("dt", { textContent: "Commitment" }), el("dd", { className: "mono draw-commitment", title: draw.commitment, textContent: short(draw.commitment) }));
  if (draw.seed) {
    proof.append(
      el("dt", { textContent: "Seed" }), el("dd", { className: "mono draw-seed", title: draw.seed, textContent: short(draw.seed) }),
      el("dt", { textContent: "Entrants" }), el("dd", { textContent: formatCount(draw.participants) }),
      el("dt", { textContent: "Winner" + ((draw.winners || []).length === 1 ? "" : "s") }),
      el("dd", { className: "draw-winners", textContent: (draw.winners || []).join(", ") || "—" }));
  }
  item.append(proof);
  if (!draw.seed) {
    item.append(el("p", { className: "muted small", textContent: "The seed is sealed: its SHA-256 is the commitment above." }));
    if (canRun) item.append(el("button", { type: "button", className: "primary", textContent: "Run the draw", dataset: { action: "run-draw" } }));
  } else {
    if (draw.won || (me && (draw.winners || []).includes(me))) item.append(el("p", { className: "draw-won", textContent: "You won!" }));
    const check = draw.verified === true ? "Verified in this browser ✓" : draw.verified === false ? "Verification FAILED" : "Verifying…";
    item.append(el("p", { className: `draw-verified ${draw.verified === false ? "bad" : ""}`, textContent: check }));
  }
  return item;
}

async function verifyFromNode(draw, token, room) {
  const data = await api(`${SEGMENTS}/rooms/${encodeURIComponent(room)}/draws/${encodeURIComponent(draw.draw_id)}`, token);
  draw.participant_list = data.participants || [];
  draw.node_verified = data.verified;
  return verifyDraw({ seed: data.seed, commitment: draw.commitment, participants: data.participants || [], winners: draw.winners || [] });
}

// -- watch page ---------------------------------------------------------------------------------------

export class ViewerEngage {
  constructor({ root, coupons, client, token, room, state, me, ref }) {
    this.root = root;
    this.couponBox = coupons;
    this.client = client;
    this.token = token;
    this.room = room;
    this.me = me;
    this.ref = ref;
    this.S = state;
    this.S.coupons = [];
    this.S.polls = {};
    this.S.draws = {};
    this.S.referral = null;
    this.S.notices = [];
    this.requests = new Map(); // id -> what (vote:<poll_id>, referral)
    this.referralSent = false;
    this.ui = { polls: $("#polls", root), draws: $("#draws", root), notice: $("#engage-notice", root) };

    client.on("coupon.granted", (d) => this.coupon(d));
    client.on("poll.created", (d) => { mergePoll(this.S.polls, d); this.render(); });
    client.on("poll.results", (d) => { mergePoll(this.S.polls, d); this.render(); });
    client.on("poll.voted", (d) => {
      const poll = this.S.polls[d.poll_id];
      if (poll) { poll.voted = d.option; this.render(); }
    });
    client.on("draw.created", (d) => {
      this.S.draws[d.draw_id] = { ...d, winners_wanted: d.winners, winners: [], seed: null, verified: null, won: false };
      this.render();
    });
    client.on("draw.result", (d) => this.drawResult(d));
    client.on("draw.won", (d) => {
      const draw = this.S.draws[d.draw_id];
      if (draw) { draw.won = true; this.render(); }
      toast(`You won the draw “${d.title}”!`, "info", 8000);
    });
    client.on("segments.referral", (d) => { this.S.referral = { referrer: d.referrer, status: d.status }; });
    client.on("error", (d) => this.error(d));
    client.on("*", (d, env) => {
      // Segment actions: a notification with a text (and maybe a link).
      if (env && env.type && env.type.startsWith("segments.") && d && d.action && d.text) this.notify(env.type, d);
    });
    client.on("state", ({ state }) => { if (state === "open") this.referred(); });
    this.ui.polls.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-option]");
      if (button) this.vote(button.closest("[data-poll-id]").dataset.pollId, Number(button.dataset.option));
    });
    this.couponBox.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (!button) return;
      const code = button.closest("[data-code]").dataset.code;
      if (button.dataset.action === "dismiss") this.dismiss(code);
      else if (button.dataset.action === "copy" && navigator.clipboard) {
        navigator.clipboard.writeText(code).then(() => { button.textContent = "Copied"; }, () => {});
      }
    });
  }

  /** ?ref=<identity>: tell segments who invited this viewer, once, after connecting. */
  referred() {
    if (!this.ref || this.referralSent || this.ref === this.me) return;
    const id = this.client.send("segments.referred", { referrer: this.ref, source: "link" }, { quiet: true });
    if (id === null) return;
    this.referralSent = true;
    this.requests.set(id, "referral");
  }

  coupon(d) {
    if (!d || !d.code || this.S.coupons.some((c) => c.code === d.code)) return;
    const coupon = {
      code: d.code, reason: d.reason, sku: d.sku ?? null, percent_off: d.percent_off, expires_at: d.expires_at,
      text: d.text || "", dismissed: false,
    };
    this.S.coupons.push(coupon);
    const title = COUPON_TITLE[coupon.reason] || "A coupon for you";
    const what = `${coupon.percent_off}% off${coupon.sku ? ` ${coupon.sku}` : ""}`;
    const card = el("div", { className: "coupon-toast", role: "status", dataset: { code: coupon.code, reason: coupon.reason || "" } },
      el("div", { className: "coupon-main" },
        el("span", { className: "coupon-title", textContent: title }),
        el("strong", { className: "coupon-off", textContent: what }),
        coupon.text ? el("span", { className: "coupon-text", textContent: coupon.text }) : null,
        el("span", { className: "coupon-code-row" },
          el("code", { className: "coupon-code", textContent: coupon.code }),
          el("button", { type: "button", className: "link", textContent: "Copy", dataset: { action: "copy" } })),
        coupon.expires_at ? el("span", { className: "coupon-expiry", textContent: `Valid until ${formatDateTime(coupon.expires_at)}` }) : null),
      el("button", { type: "button", className: "coupon-dismiss", textContent: "×", title: "Dismiss", "aria-label": "dismiss", dataset: { action: "dismiss" } }));
    this.couponBox.append(card);
    this.couponBox.hidden = false;
  }

  dismiss(code) {
    const coupon = this.S.coupons.find((c) => c.code === code);
    if (coupon) coupon.dismissed = true;
    const card = this.couponBox.querySelector(`[data-code="${CSS.escape(code)}"]`);
    if (card) card.remove();
    this.couponBox.hidden = !this.couponBox.children.length;
  }

  notify(kind, d) {
    this.S.notices.push({ kind, text: d.text, url: d.url || d.replay_url || null });
    toast(d.text, "info", 5000);
  }

  vote(pollId, option) {
    const poll = this.S.polls[pollId];
    if (!poll || poll.closed || poll.voted !== null) return;
    const id = this.client.send("poll.vote", { poll_id: pollId, option }, { quiet: true });
    if (id === null) { this.notice("Not connected: try again in a moment."); return; }
    this.requests.set(id, `vote:${pollId}`);
  }

  async drawResult(d) {
    const draw = this.S.draws[d.draw_id] || (this.S.draws[d.draw_id] = { draw_id: d.draw_id, won: false });
    Object.assign(draw, {
      title: d.title, commitment: d.commitment, seed: d.seed, winners: d.winners || [], participants: d.participants,
      winners_wanted: draw.winners_wanted || (d.winners || []).length, verified: null,
    });
    if (this.me && draw.winners.includes(this.me)) draw.won = true;
    this.render();
    try {
      draw.verified = await verifyFromNode(draw, this.token, this.room);
    } catch (_) {
      draw.verified = null;
    }
    this.render();
  }

  error(d) {
    const what = d.reply_to && this.requests.get(d.reply_to);
    if (!what) return;
    this.requests.delete(d.reply_to);
    if (what === "referral") {
      this.S.referral = { referrer: this.ref, error: d.code };
      return;
    }
    if (what.startsWith("vote:")) {
      const poll = this.S.polls[what.slice(5)];
      if (poll && d.code === "already_voted") poll.voted = poll.voted ?? -1;
      if (poll && d.code === "poll_closed") poll.closed = true;
      this.render();
    }
    this.notice(errorText(d));
  }

  notice(text) {
    this.ui.notice.textContent = text;
    this.ui.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { this.ui.notice.hidden = true; }, 6000);
  }

  render() {
    const polls = Object.values(this.S.polls);
    this.ui.polls.replaceChildren(...polls.map((p) => pollView(p, { canVote: true, canClose: false })));
    const draws = Object.values(this.S.draws);
    this.ui.draws.replaceChildren(...draws.map((d) => drawView(d, { me: this.me, canRun: false })));
    this.root.hidden = !polls.length && !draws.length;
  }
}

// -- host page ------------------------------------------------------------------------------------------

export class HostEngage {
  constructor({ root, client, token, room, state }) {
    this.root = root;
    this.client = client;
    this.token = token;
    this.room = room;
    this.S = state;
    this.S.segments = { available: null };
    this.S.polls = {};
    this.S.draws = {};
    this.requests = new Map();
    this.ui = {
      pollForm: $("#poll-form", root), polls: $("#polls", root), drawForm: $("#draw-form", root),
      draws: $("#draws", root), notice: $("#engage-notice", root),
    };

    client.on("poll.created", (d) => { mergePoll(this.S.polls, d); this.render(); });
    client.on("poll.results", (d) => { mergePoll(this.S.polls, d); this.render(); });
    client.on("draw.created", (d) => {
      this.S.draws[d.draw_id] = { ...d, winners_wanted: d.winners, winners: [], seed: null, verified: null };
      this.render();
    });
    client.on("draw.result", async (d) => {
      const draw = this.S.draws[d.draw_id] || (this.S.draws[d.draw_id] = { draw_id: d.draw_id });
      Object.assign(draw, {
        title: d.title, commitment: d.commitment, seed: d.seed, winners: d.winners || [], participants: d.participants,
        winners_wanted: draw.winners_wanted || (d.winners || []).length, verified: null, verify_url: d.verify,
      });
      this.render();
      try { draw.verified = await verifyFromNode(draw, this.token, this.room); } catch (_) { draw.verified = null; }
      this.render();
    });
    client.on("error", (d) => {
      const what = d.reply_to && this.requests.get(d.reply_to);
      if (!what) return;
      this.requests.delete(d.reply_to);
      this.notice(errorText(d), "error");
    });
    this.ui.pollForm.addEventListener("submit", (ev) => { ev.preventDefault(); this.createPoll(); });
    this.ui.drawForm.addEventListener("submit", (ev) => { ev.preventDefault(); this.createDraw(); });
    this.ui.polls.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action=close-poll]");
      if (button) this.send("poll.close", { poll_id: button.closest("[data-poll-id]").dataset.pollId });
    });
    this.ui.draws.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action=run-draw]");
      if (button) this.send("draw.run", { draw_id: button.closest("[data-draw-id]").dataset.drawId });
    });
  }

  /** Shows the card when the node has the segments plugin (its metrics answer the host). */
  async load() {
    try {
      await api(`${SEGMENTS}/rooms/${encodeURIComponent(this.room)}/metrics`, this.token);
      this.S.segments.available = true;
      this.root.hidden = false;
    } catch (err) {
      this.S.segments.available = false;
      this.S.segments.error = err.message;
    }
  }

  send(type, data) {
    const id = this.client.send(type, data, { quiet: true });
    if (id === null) { this.notice("Not connected: try again in a moment.", "warn"); return null; }
    this.requests.set(id, type);
    return id;
  }

  createPoll() {
    const f = this.ui.pollForm.elements;
    const question = f.question.value.trim();
    const options = f.options.value.split(/\n|,/).map((o) => o.trim()).filter(Boolean);
    if (!question || options.length < 2) { this.notice("A question and at least two options (one per line).", "warn"); return; }
    if (this.send("poll.create", { question, options }) !== null) { f.question.value = ""; f.options.value = ""; }
  }

  createDraw() {
    const f = this.ui.drawForm.elements;
    const data = { title: f.title.value.trim() || "Lucky draw", winners: Math.max(1, Math.min(100, Number(f.winners.value) || 1)) };
    if (this.send("draw.create", data) !== null) f.title.value = "";
  }

  notice(text, kind = "info") {
    this.ui.notice.textContent = text;
    this.ui.notice.dataset.kind = kind;
    this.ui.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { this.ui.notice.hidden = true; }, 6000);
  }

  render() {
    const polls = Object.values(this.S.polls);
    this.ui.polls.replaceChildren(...(polls.length ? polls.map((p) => pollView(p, { canVote: false, canClose: true }))
      : [el("li", { className: "muted empty", textContent: "No poll yet." })]));
    const draws = Object.values(this.S.draws);
    this.ui.draws.replaceChildren(...(draws.length ? draws.map((d) => drawView(d, { me: null, canRun: true }))
      : [el("li", { className: "muted empty", textContent: "No draw yet." })]));
  }
}
