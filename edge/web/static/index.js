// Index page: what this node is (/healthz) and a form to open a room.
import { $ } from "./ui.js";

const ROOM = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
window.edgeState = { page: "index", health: null };

async function loadHealth() {
  const badge = $("#node-badge");
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    const health = await response.json();
    window.edgeState.health = health;
    for (const dd of document.querySelectorAll("#health dd")) {
      const value = health[dd.dataset.key];
      dd.textContent = value === undefined || value === "" ? "—" : String(value);
    }
    badge.textContent = `${health.node} · ${health.region}`;
    badge.dataset.state = health.status === "ok" ? "ok" : "warn";
    document.title = `edge · ${health.node} (${health.region})`;
  } catch (err) {
    badge.textContent = "unreachable";
    badge.dataset.state = "error";
  }
}

$("#room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const room = form.room.value.trim();
  if (!ROOM.test(room)) {
    form.room.setCustomValidity("1-64 letters, digits, '_', '.', '-'; starts with a letter or digit");
    form.room.reportValidity();
    return;
  }
  const kind = ev.submitter && ev.submitter.value === "watch" ? "watch" : "host";
  const url = new URL(`/${kind}/${encodeURIComponent(room)}`, window.location.href);
  const token = form.token.value.trim();
  if (token) url.searchParams.set("token", token);
  window.location.assign(url.href);
});
$("#room-form").room.addEventListener("input", (ev) => ev.target.setCustomValidity(""));

loadHealth();
setInterval(loadHealth, 10000);
