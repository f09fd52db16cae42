// Loyalty on the watch page (docs/loyalty.md): the member badge (tier and points
// from GET /v1/plugins/loyalty/me) and the daily check-in (loyalty.checkin).
//
// window.edgeState.member: null until loaded, then
//   {available, identity, tier, level, points, growth, next_tier, last_checkin,
//    checkedInToday, checkin: <loyalty.checked_in data> | null, error}

import { api, el, formatCount, toast } from "./ui.js";

const ME = "/v1/plugins/loyalty/me";

function titleCase(name) {
  return name ? name.charAt(0).toUpperCase() + name.slice(1) : "";
}

/** Today (YYYY-MM-DD) in the member's time zone, as the plugin counts days. */
function today(timezone) {
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: timezone || "UTC", year: "numeric", month: "2-digit", day: "2-digit" })
      .format(new Date());
  } catch (_) {
    return new Date().toISOString().slice(0, 10);
  }
}

export class MemberBadge {
  /** canCheckIn: false for roles that do not earn (staff): no check-in button for them. */
  constructor({ badge, checkin, client, token, state, canCheckIn = true }) {
    this.canCheckIn = canCheckIn;
    this.badge = badge;
    this.button = checkin;
    this.client = client;
    this.token = token;
    this.S = state;
    this.S.member = null;
    this.checkinId = null;
    this.refreshTimer = null;

    this.button.addEventListener("click", () => this.checkin());
    client.on("loyalty.checked_in", (d) => {
      this.checkinId = null;
      const m = this.S.member;
      if (!m) return;
      m.checkin = d;
      m.checkedInToday = true;
      if (d.balance) { m.points = d.balance.points; m.growth = d.balance.growth; }
      m.last_checkin = d.day || m.last_checkin;
      this.render();
      toast(`Checked in: +${d.points || 0} point${d.points === 1 ? "" : "s"}`, "info", 4000);
      this.refreshSoon(300);
    });
    client.on("loyalty.earned", (d) => {
      const m = this.S.member;
      if (m && d.balance) { m.points = d.balance.points; m.growth = d.balance.growth; this.render(); }
      if (d.points) toast(`+${d.points} point${d.points === 1 ? "" : "s"}`, "info", 3000);
      this.refreshSoon(300);
    });
    client.on("error", (d) => {
      if (!d.reply_to || d.reply_to !== this.checkinId) return;
      this.checkinId = null;
      const m = this.S.member;
      if (d.code === "already_checked_in" && m) {
        m.checkedInToday = true;
        this.render();
        toast("You already checked in today.", "info", 3000);
      } else {
        if (m) m.error = d.code;
        this.render();
        toast(`Check-in failed: ${d.reason || d.code}`, "error");
      }
    });
    client.on("state", () => this.render());
  }

  async load() {
    let me;
    try {
      me = await api(ME, this.token);
    } catch (err) {
      // No loyalty plugin (404), or a token it does not take: no badge.
      this.S.member = { available: false, error: err.code || String(err.status) };
      this.render();
      return;
    }
    const previous = this.S.member || {};
    const day = today(me.timezone);
    this.S.member = {
      available: true,
      identity: me.identity,
      tier: me.tier ? me.tier.name : null,
      level: me.tier ? me.tier.level : null,
      privileges: me.privileges || [],
      points: me.points,
      growth: me.growth,
      next_tier: me.next_tier || null,
      last_checkin: me.last_checkin || null,
      checkedInToday: previous.checkedInToday || (!!me.last_checkin && me.last_checkin >= day),
      checkin: previous.checkin || null,
      error: null,
      loads: (previous.loads || 0) + 1,
    };
    this.render();
  }

  /** Read /me again shortly (after a purchase or a check-in: the credit lands a moment later). */
  refreshSoon(ms = 800) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.load(), ms);
  }

  render() {
    const m = this.S.member;
    if (!m || !m.available) {
      this.badge.hidden = true;
      this.button.hidden = true;
      return;
    }
    this.badge.dataset.tier = m.tier || "";
    this.badge.replaceChildren(
      el("span", { className: "member-tier", textContent: titleCase(m.tier) || "Member" }),
      el("span", { className: "member-points", textContent: `${formatCount(m.points)} pts` }),
    );
    const next = m.next_tier;
    this.badge.title = next
      ? `${formatCount(m.growth)} growth · ${formatCount(next.growth_needed)} more for ${titleCase(next.name)}`
      : `${formatCount(m.growth)} growth · top tier`;
    this.badge.hidden = false;
    this.button.hidden = !this.canCheckIn;
    const open = this.client.state === "open";
    this.button.disabled = !!m.checkedInToday || !open || this.checkinId !== null;
    this.button.textContent = m.checkedInToday ? "Checked in ✓" : "Daily check-in";
  }

  checkin() {
    const id = this.client.send("loyalty.checkin", {}, { quiet: true });
    if (id === null) return;
    this.checkinId = id;
    this.render();
    // The answer (loyalty.checked_in or an error) re-enables or settles the button.
    setTimeout(() => { if (this.checkinId === id) { this.checkinId = null; this.render(); } }, 10000);
  }
}
