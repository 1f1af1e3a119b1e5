// The supervisors' wallboard: redrawn from /api/v1/routing/wallboard whenever the websocket says
// something routing-related changed; waits keep counting up between events.
import { api } from "/static/app.js";

const T = JSON.parse(document.getElementById("i18n").textContent);
const root = document.getElementById("wallboard");
let board = null;
let loadedAt = Date.now();
let pending = null;

function cell(text, field, extra = {}) {
  const td = document.createElement("td");
  td.textContent = text;
  if (field) td.dataset.field = field;
  Object.assign(td.dataset, extra);
  return td;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m ${s % 60}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
}

function render() {
  const queues = document.querySelector("#wb-queues tbody");
  queues.replaceChildren();
  if (!board.queues.length) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(T.no_queues);
    td.colSpan = 12;
    tr.append(td);
    queues.append(tr);
  }
  for (const q of board.queues) {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.id;
    const name = cell(q.name);
    if (!q.open) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = T.closed;
      name.append(" ", badge);
    }
    tr.append(
      name,
      cell(q.waiting, "waiting"),
      cell(q.vip_waiting, "vip_waiting"),
      cell(q.waiting ? duration(q.longest_wait_s) : "—", "longest_wait", { seconds: q.longest_wait_s, waiting: q.waiting }),
      cell(q.agents.online, "online"),
      cell(q.agents.away, "away"),
      cell(q.agents.offline, "offline"),
      cell(q.agents.full, "full"),
      cell(`${q.load} / ${q.capacity}`, "load"),
      cell(q.answered_today, "answered"),
      cell(q.abandoned_today, "abandoned"),
      cell(q.service_level === null ? "—" : `${Math.round(q.service_level * 100)}%`, "service_level"),
    );
    queues.append(tr);
  }
  const agents = document.querySelector("#wb-agents tbody");
  agents.replaceChildren();
  for (const a of board.agents) {
    const tr = document.createElement("tr");
    tr.dataset.agent = a.id;
    tr.append(cell(a.name), cell(T.presence[a.presence] ?? a.presence, "presence"), cell(`${a.load} / ${a.capacity}`, "load"));
    agents.append(tr);
  }
}

async function refresh() {
  pending = null;
  try {
    board = await api("/api/v1/routing/wallboard");
    loadedAt = Date.now();
    render();
    root.dataset.updated = String(Date.now());
  } catch (error) {
    console.error("wallboard refresh failed", error);
  }
}

function soon() {
  // Bursts of events (a pass assigning many) become one refresh.
  if (!pending) pending = setTimeout(refresh, 200);
}

setInterval(() => {
  for (const td of document.querySelectorAll('#wb-queues td[data-field="longest_wait"]')) {
    if (td.dataset.waiting === "0" || !board) continue;
    td.textContent = duration(Number(td.dataset.seconds) + (Date.now() - loadedAt) / 1000);
  }
}, 1000);

const RELEVANT = new Set(["routing.updated", "conversation.updated", "conversation.opened", "agent.presence"]);
let retryDelay = 500;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.addEventListener("open", () => { retryDelay = 500; root.dataset.live = "true"; refresh(); });
  socket.addEventListener("message", (event) => {
    if (RELEVANT.has(JSON.parse(event.data).type)) soon();
  });
  socket.addEventListener("close", (event) => {
    root.dataset.live = "false";
    if (event.code === 4401) { location.href = `/login?next=${encodeURIComponent(location.pathname)}`; return; }
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  });
}

refresh();
connect();
