// Small DOM and token helpers shared by the pages.

/** el("li", {className, textContent, dataset}, ...children): text is never parsed as HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function formatTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function formatCount(n) {
  return new Intl.NumberFormat(undefined, { notation: n >= 10000 ? "compact" : "standard" }).format(n || 0);
}

export function formatPrice(price, currency) {
  const amount = typeof price === "string" ? Number(price) : price;
  if (typeof amount === "number" && Number.isFinite(amount) && currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount);
    } catch (_) { /* unknown currency code */ }
  }
  return [price, currency].filter((x) => x !== undefined && x !== null && x !== "").join(" ");
}

/** The (unverified) claims of a JWT, for display only: {sub, role, room, exp}. */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch (_) {
    return null;
  }
}

/**
 * The page's token: ?token= (then moved out of the address bar, so it is not
 * bookmarked, shared or shown), else what this tab stored for the room.
 */
export function takeToken(kind, room) {
  const key = `edge.token.${kind}.${room}`;
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    try { sessionStorage.setItem(key, fromUrl); } catch (_) { /* storage disabled */ }
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
    return fromUrl;
  }
  try { return sessionStorage.getItem(key) || ""; } catch (_) { return ""; }
}

export function storeToken(kind, room, token) {
  try { sessionStorage.setItem(`edge.token.${kind}.${room}`, token); } catch (_) { /* storage disabled */ }
}

export function forgetToken(kind, room) {
  try { sessionStorage.removeItem(`edge.token.${kind}.${room}`); } catch (_) { /* storage disabled */ }
}

/**
 * Show the token form in `form` until a token is entered; resolves with it.
 * `check(token)` returns a warning string or "" (e.g. wrong role).
 */
export function askToken(form, check = () => "") {
  form.hidden = false;
  const input = form.querySelector("input");
  const warning = form.querySelector(".form-warning");
  input.focus();
  return new Promise((resolve) => {
    form.addEventListener("submit", function onSubmit(ev) {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      const problem = check(token);
      if (problem && warning && warning.dataset.shown !== token) {
        warning.textContent = `${problem} Submit again to use it anyway.`;
        warning.hidden = false;
        warning.dataset.shown = token;
        return;
      }
      form.removeEventListener("submit", onSubmit);
      form.hidden = true;
      resolve(token);
    });
  });
}

/** A warning for a token of the wrong role or room, or "". */
export function tokenWarning(token, room, roles) {
  const claims = tokenClaims(token);
  if (!claims) return "This does not look like an edge token.";
  if (claims.room !== "*" && claims.room !== room) return `This token is for room "${claims.room}".`;
  if (claims.role !== "admin" && !roles.includes(claims.role)) return `This token's role is "${claims.role}".`;
  if (claims.exp && claims.exp * 1000 < Date.now()) return "This token has expired.";
  return "";
}

/** Polls getStats() every `periodMs` while the pc is open: callback(report). */
export function pollStats(pc, periodMs, callback) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped || pc.signalingState === "closed") return;
    try {
      const report = await pc.getStats();
      if (!stopped) callback(report);
    } catch (err) { console.warn("getStats", err); }
    if (!stopped) timer = setTimeout(tick, periodMs);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

/** A short-lived message at the bottom of the screen. */
export function toast(text, kind = "info", ms = 5000) {
  let box = document.getElementById("toasts");
  if (!box) {
    box = el("div", { id: "toasts", role: "status" });
    box.setAttribute("aria-live", "polite");
    document.body.append(box);
  }
  const item = el("div", { className: `toast ${kind}`, textContent: text });
  while (box.children.length >= 3) box.firstChild.remove(); // the newest three at most
  box.append(item);
  setTimeout(() => item.remove(), ms);
}

/** "m:ss" (or "h:mm:ss") for a number of seconds. */
export function formatClock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A date and time for an epoch value in seconds or milliseconds. */
export function formatDateTime(epoch) {
  if (typeof epoch !== "number" || !Number.isFinite(epoch)) return "";
  const ms = epoch < 1e11 ? epoch * 1000 : epoch;
  return new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** An error from api(): the HTTP status and the problem document's code. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
  }
}

/**
 * A JSON request to the node with the page's token as `Authorization: Bearer`:
 * resolves with the parsed body (null for 204), rejects with an ApiError
 * (status 0 when the node could not be reached).
 */
export async function api(path, token, { method = "GET", body = undefined } = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "network", err.message || "the node could not be reached");
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new ApiError(response.status, data && data.code, (data && (data.detail || data.title)) || `HTTP ${response.status}`);
  }
  return data;
}

/** The page's own URL parameter `name` ("" when absent). */
export function pageParam(name) {
  try { return new URL(window.location.href).searchParams.get(name) || ""; } catch (_) { return ""; }
}
