// The agent console: conversation list, conversation view, composer and contact panel,
// kept live by the /ws websocket. Talks only to the public REST API.
import { api } from "./app.js";

const root = document.getElementById("inbox");
const T = JSON.parse(document.getElementById("i18n").textContent);
const me = { id: root.dataset.userId, name: root.dataset.userName };
const canWrite = root.dataset.canWrite === "true";
const locale = root.dataset.locale === "zh_CN" ? "zh-CN" : "en";
const $ = (id) => document.getElementById(id);

const state = {
  view: "all",
  conversations: new Map(),
  current: null, // ConversationDetail of the open conversation
  users: [],
  reasons: [],
  canned: [],
  templates: [],
  typingTimer: null,
};

function t(key, params = {}) {
  let text = T[key] ?? key;
  for (const [k, v] of Object.entries(params)) text = text.replace(`{${k}}`, v);
  return text;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const sameDay = new Date().toDateString() === date.toDateString();
  return date.toLocaleString(locale, sameDay ? { hour: "2-digit", minute: "2-digit" } : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

// --- conversation list ------------------------------------------------------------------------

function filters() {
  const params = new URLSearchParams({ view: state.view, status: $("filter-status").value, limit: "100" });
  if ($("filter-channel").value) params.set("channel", $("filter-channel").value);
  if ($("filter-account").value) params.set("account_id", $("filter-account").value);
  return params;
}

function matchesFilters(conv) {
  if (conv.status !== $("filter-status").value) return false;
  if ($("filter-channel").value && conv.channel && conv.channel !== $("filter-channel").value) return false;
  if ($("filter-account").value && conv.account_id !== $("filter-account").value) return false;
  if (state.view === "mine" && conv.assignee_id !== me.id) return false;
  if (state.view === "unassigned" && conv.assignee_id) return false;
  return true;
}

async function loadConversations() {
  const page = await api(`/api/v1/conversations?${filters()}`);
  state.conversations = new Map(page.items.map((c) => [c.id, c]));
  renderList();
}

function renderList() {
  const list = $("conversations");
  const items = [...state.conversations.values()]
    .filter(matchesFilters)
    .sort((a, b) => (b.priority - a.priority) || (new Date(b.last_message_at) - new Date(a.last_message_at)));
  list.replaceChildren(
    ...items.map((c) =>
      el(
        "li",
        { class: `conv-item ${state.current?.conversation.id === c.id ? "active" : ""}`, dataset: { id: c.id }, onclick: () => openConversation(c.id) },
        el("div", { class: "row" },
          el("strong", { class: "name" }, c.contact_name || t("inbox.unknown_contact")),
          el("span", { class: "time muted" }, when(c.last_message_at))),
        el("div", { class: "row" },
          el("span", { class: "preview" }, c.last_message_preview),
          c.unread_count ? el("span", { class: "badge unread", title: t("inbox.unread") }, c.unread_count) : null),
        el("div", { class: "row meta" },
          el("span", { class: `pill channel-${c.channel}` }, T[`channel.${c.channel}`] ?? c.channel),
          el("span", { class: "muted" }, c.account_name),
          el("span", { class: "muted assignee" }, c.assignee_name ?? t("inbox.unassigned"))),
      ),
    ),
  );
  $("conversations-empty").hidden = items.length > 0;
}

// --- conversation view ------------------------------------------------------------------------

const TICKS = { queued: "○", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" };
const RANK = { queued: 0, sent: 1, delivered: 2, read: 3, failed: 4 };
// Status events can arrive before the message they are about is on screen (the worker is quick):
// remember the latest per message and apply it when the message is drawn.
const latestStatus = new Map();

function withLatestStatus(m) {
  const known = latestStatus.get(m.id);
  if (known && (RANK[known.status] ?? -1) > (RANK[m.status] ?? -1)) {
    return { ...m, status: known.status, error_reason: known.error_reason ?? m.error_reason };
  }
  return m;
}

function messageNode(message) {
  const m = withLatestStatus(message);
  const classes = ["msg", m.kind === "note" ? "note" : m.direction === "in" ? "in" : "out", m.pinned_at ? "pinned" : ""];
  const body = m.text ?? describe(m);
  const tick = m.direction === "out" && m.kind !== "note"
    ? el("span", { class: `tick ${m.status}`, title: t(`tick.${m.status}`) + (m.error_reason ? `: ${m.error_reason}` : ""), dataset: { status: m.status } }, TICKS[m.status] ?? "")
    : null;
  const pin = canWrite && m.kind !== "note"
    ? el("button", { class: "link pin", onclick: () => togglePin(m) }, t(m.pinned_at ? "inbox.unpin" : "inbox.pin"))
    : null;
  return el("li", { class: classes.join(" "), dataset: { id: m.id } },
    m.kind === "note" ? el("span", { class: "note-label" }, t("inbox.note")) : null,
    el("div", { class: "bubble" }, body),
    m.status === "failed" && m.error_reason ? el("div", { class: "error-text" }, m.error_reason) : null,
    el("div", { class: "msg-meta muted" }, m.author_name ? `${m.author_name} · ` : "", when(m.created_at), tick, pin));
}

function describe(m) {
  const c = m.content || {};
  if (m.type === "location" && c.location) return `[${t("type.location")}] ${c.location.name ?? ""} ${c.location.latitude}, ${c.location.longitude}`;
  if (m.type === "template" && c.template) return `[${t("type.template")}] ${c.template.name}`;
  if (m.type === "link" && c.link) return `[${t("type.link")}] ${c.link.title ?? c.link.url}`;
  if (c.recognition) return `[${t("type.voice")}] ${c.recognition}`;
  return `[${T[`type.${m.type}`] ?? m.type}]`;
}

async function openConversation(id) {
  const detail = await api(`/api/v1/conversations/${id}`);
  if (state.current?.conversation.id === id) {
    // Messages sent or received while this reload was in flight are newer than its snapshot: keep them.
    const known = new Set(detail.messages.map((m) => m.id));
    const newest = detail.messages.length ? Math.max(...known) : 0;
    for (const m of state.current.messages) if (!known.has(m.id) && m.id > newest) detail.messages.push(m);
  }
  state.current = detail;
  $("conv-placeholder").hidden = true;
  $("conv").hidden = false;
  renderConversation();
  renderList();
  if (detail.conversation.unread_count) {
    await api(`/api/v1/conversations/${id}/read`, { method: "POST" });
    const item = state.conversations.get(id);
    if (item) { item.unread_count = 0; renderList(); }
  }
  history.replaceState(null, "", `#${id}`);
}

function renderConversation() {
  const { conversation: c, contact, messages, pinned, window } = state.current;
  $("conv-title").textContent = contact.display_name || t("inbox.unknown_contact");
  $("conv-meta").textContent = `${T[`channel.${c.channel}`] ?? c.channel} · ${c.account_name} · ${t(`status.${c.status}`)}`;
  $("btn-accept").hidden = !canWrite || !!c.assignee_id;
  $("btn-resolve").hidden = !canWrite || c.status === "resolved";
  $("btn-snooze").hidden = !canWrite || c.status === "resolved";
  $("btn-reopen").hidden = !canWrite || c.status !== "resolved";
  renderAssign(c);
  $("messages").replaceChildren(...messages.map(messageNode));
  $("messages").scrollTop = $("messages").scrollHeight;
  $("pinned").hidden = pinned.length === 0;
  $("pinned").replaceChildren(el("strong", {}, `${t("inbox.pinned")}: `), ...pinned.map((m) => el("span", { class: "pinned-item" }, m.text ?? describe(m))));
  renderWindow(window);
  renderContact(contact);
}

function renderAssign(c) {
  const select = $("assign-select");
  select.hidden = !canWrite;
  select.replaceChildren(
    el("option", { value: "" }, t("inbox.unassigned")),
    ...state.users.map((u) => el("option", { value: u.id, selected: u.id === c.assignee_id }, u.name)),
  );
}

function renderWindow(window) {
  const banner = $("window-banner");
  banner.hidden = window.open;
  banner.textContent = window.open ? "" : `${t("inbox.window_closed")} ${window.reason}`;
  $("composer").classList.toggle("template-only", !window.open);
  if (!window.open && currentMode() === "reply") showTemplates();
}

function renderContact(contact) {
  $("contact-panel").hidden = false;
  $("contact-name").textContent = contact.display_name || t("inbox.unknown_contact");
  const facts = [["contact.phone", contact.phone], ["contact.email", contact.email], ["contact.city", contact.city], ["contact.stage", T[`stage.${contact.lifecycle_stage}`] ?? contact.lifecycle_stage]];
  $("contact-facts").replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {}, t(k)), el("dd", {}, v)]));
  $("contact-identities").replaceChildren(...contact.identities.map((i) => el("li", {}, el("span", { class: "pill" }, T[`identity.${i.kind}`] ?? i.kind), " ", el("code", {}, i.value))));
  $("contact-recent").replaceChildren(...state.current.recent_conversations.map((r) =>
    el("li", { onclick: () => openConversation(r.id) }, el("span", { class: `pill channel-${r.channel}` }, T[`channel.${r.channel}`] ?? r.channel), ` ${r.account_name} · ${when(r.last_message_at)} · ${t(`status.${r.status}`)}`)));
}

// --- composer --------------------------------------------------------------------------------

function currentMode() {
  return document.querySelector("input[name=mode]:checked").value;
}

async function send(payload) {
  const id = state.current.conversation.id;
  $("composer-error").textContent = "";
  try {
    const message = await api(`/api/v1/conversations/${id}/messages`, { method: "POST", body: JSON.stringify(payload) });
    appendMessage(message);
    $("composer-text").value = "";
    $("template-picker").hidden = true;
  } catch (error) {
    $("composer-error").textContent = error.message;
  }
}

function appendMessage(message) {
  if (!state.current || message.conversation_id !== state.current.conversation.id) return;
  if (document.querySelector(`#messages li[data-id="${message.id}"]`)) return;
  state.current.messages.push(message);
  $("messages").append(messageNode(message));
  $("messages").scrollTop = $("messages").scrollHeight;
}

async function showTemplates() {
  const picker = $("template-picker");
  const accountId = state.current.conversation.account_id;
  try {
    state.templates = await api(`/api/v1/channel-accounts/${accountId}/templates`);
  } catch (error) {
    state.templates = [];
    picker.replaceChildren(el("p", { class: "error-text" }, error.message));
    picker.hidden = false;
    return;
  }
  picker.replaceChildren(
    el("h4", {}, t("inbox.templates")),
    ...state.templates.map((tpl) => {
      const inputs = tpl.parameters.map((p, i) => el("input", { placeholder: p, dataset: { index: i }, "aria-label": p }));
      return el("div", { class: "template", dataset: { name: tpl.name } },
        el("strong", {}, tpl.name), el("span", { class: "muted" }, ` ${tpl.language ?? ""}`),
        el("p", { class: "muted" }, tpl.preview),
        ...inputs,
        el("button", { type: "button", class: "primary", onclick: () => send({ type: "template", template: tpl.build(inputs.map((x) => x.value)) }) }, t("inbox.send_template")));
    }),
    state.templates.length ? null : el("p", { class: "muted" }, t("inbox.no_templates")),
  );
  for (const tpl of state.templates) {
    tpl.build = (values) => ({
      name: tpl.name,
      language: tpl.language,
      components: tpl.kind === "whatsapp" && values.length ? [{ type: "body", parameters: values.map((text) => ({ type: "text", text })) }] : [],
      data: tpl.kind === "wechat" ? Object.fromEntries(tpl.parameters.map((p, i) => [p, { value: values[i] ?? "" }])) : {},
    });
  }
  picker.hidden = false;
}

function showCanned(prefix) {
  const box = $("canned");
  const matches = state.canned.filter((c) => c.shortcut.startsWith(prefix)).slice(0, 8);
  box.hidden = matches.length === 0;
  box.replaceChildren(...matches.map((c) => el("button", { type: "button", class: "canned-item", onclick: () => { $("composer-text").value = c.body; box.hidden = true; $("composer-text").focus(); } }, el("code", {}, `/${c.shortcut}`), ` ${c.title || c.body.slice(0, 60)}`)));
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("composer-text").value.trim();
  if (!text) return;
  send({ type: currentMode() === "note" ? "note" : "text", text });
});
$("composer-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("composer-text").addEventListener("input", () => {
  const value = $("composer-text").value;
  if (value.startsWith("/")) showCanned(value.slice(1));
  else $("canned").hidden = true;
  if (socket?.readyState === WebSocket.OPEN && state.current && !state.typingTimer) {
    socket.send(JSON.stringify({ type: "typing", conversation_id: state.current.conversation.id }));
    state.typingTimer = setTimeout(() => { state.typingTimer = null; }, 3000);
  }
});
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => {
    $("composer").classList.toggle("note-mode", currentMode() === "note");
  });
}
$("attach").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file || !state.current) return;
  $("composer-error").textContent = "";
  const form = new FormData();
  form.append("file", file);
  try {
    const media = await api(`/api/v1/conversations/${state.current.conversation.id}/media`, { method: "POST", body: form });
    const caption = $("composer-text").value.trim() || null;
    await send({ type: media.type, text: caption, media: { media_id: media.media_id, mime_type: media.mime_type, filename: media.filename, caption } });
  } catch (error) {
    $("composer-error").textContent = error.message;
  }
});
$("btn-template").addEventListener("click", () => ($("template-picker").hidden ? showTemplates() : ($("template-picker").hidden = true)));

// --- actions ---------------------------------------------------------------------------------

async function act(path, body) {
  const id = state.current.conversation.id;
  try {
    await api(`/api/v1/conversations/${id}/${path}`, { method: "POST", body: body ? JSON.stringify(body) : undefined });
    await openConversation(id);
  } catch (error) {
    $("composer-error").textContent = error.message;
  }
}

$("btn-accept").addEventListener("click", () => act("accept"));
$("btn-reopen").addEventListener("click", () => act("status", { status: "open" }));
$("btn-snooze").addEventListener("click", () => act("status", { status: "snoozed", snoozed_until: new Date(Date.now() + 3600e3).toISOString() }));
$("assign-select").addEventListener("change", (event) => act("assign", { assignee_id: event.target.value || null }));
$("btn-resolve").addEventListener("click", () => {
  const select = $("reason-select");
  if (!state.reasons.length) return act("status", { status: "resolved" });
  const byParent = Object.groupBy ? Object.groupBy(state.reasons, (r) => r.parent_id ?? "") : {};
  const label = (r) => { const parent = state.reasons.find((p) => p.id === r.parent_id); return parent ? `${parent.name} › ${r.name}` : r.name; };
  select.replaceChildren(...state.reasons.filter((r) => !(byParent[r.id]?.length)).map((r) => el("option", { value: r.id }, label(r))));
  const dialog = $("resolve-dialog");
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "ok") act("status", { status: "resolved", contact_reason_id: select.value });
  }, { once: true });
});

async function togglePin(message) {
  await api(`/api/v1/messages/${message.id}/pin`, { method: message.pinned_at ? "DELETE" : "PUT" });
  await openConversation(state.current.conversation.id);
}

$("presence").addEventListener("change", (event) => api("/api/v1/me/presence", { method: "PUT", body: JSON.stringify({ presence: event.target.value }) }));
for (const tab of document.querySelectorAll(".views button")) {
  tab.addEventListener("click", () => {
    state.view = tab.dataset.view;
    document.querySelectorAll(".views button").forEach((b) => b.classList.toggle("active", b === tab));
    loadConversations();
  });
}
for (const id of ["filter-status", "filter-channel", "filter-account"]) $(id).addEventListener("change", loadConversations);

// --- live updates ----------------------------------------------------------------------------

let socket = null;
let retryDelay = 500;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.addEventListener("open", () => { retryDelay = 500; root.dataset.live = "true"; });
  socket.addEventListener("message", (event) => onEvent(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    root.dataset.live = "false";
    if (event.code === 4401) { location.href = `/login?next=${encodeURIComponent(location.pathname)}`; return; }
    // A reconnect may have missed events: reload what is on screen.
    setTimeout(() => { connect(); loadConversations(); if (state.current) openConversation(state.current.conversation.id); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  });
}

function upsertConversation(summary) {
  const existing = state.conversations.get(summary.id) ?? {};
  const merged = { ...existing, ...summary };
  merged.contact_name = summary.contact_name ?? existing.contact_name;
  state.conversations.set(summary.id, merged);
  if (state.current?.conversation.id === summary.id) {
    Object.assign(state.current.conversation, { status: summary.status, assignee_id: summary.assignee_id });
  }
}

function onEvent(event) {
  switch (event.type) {
    case "message.created": {
      upsertConversation(event.conversation);
      const open = state.current?.conversation.id === event.conversation.id;
      if (open) {
        appendMessage(event.message);
        if (event.message.direction === "in") {
          state.current.conversation.last_inbound_at = event.message.created_at;
          api(`/api/v1/conversations/${event.conversation.id}/read`, { method: "POST" });
          state.conversations.get(event.conversation.id).unread_count = 0;
          api(`/api/v1/conversations/${event.conversation.id}`).then((d) => { state.current.window = d.window; renderWindow(d.window); });
        }
      }
      renderList();
      break;
    }
    case "conversation.opened":
    case "conversation.updated":
      upsertConversation(event.conversation);
      renderList();
      if (state.current?.conversation.id === event.conversation.id && event.type === "conversation.updated") renderConversation();
      break;
    case "message.status": {
      const previous = latestStatus.get(event.message_id);
      if (!previous || (RANK[event.status] ?? -1) >= (RANK[previous.status] ?? -1)) latestStatus.set(event.message_id, event);
      const latest = latestStatus.get(event.message_id);
      const node = document.querySelector(`#messages li[data-id="${event.message_id}"] .tick`);
      if (node && (RANK[latest.status] ?? -1) >= (RANK[node.dataset.status] ?? -1)) {
        node.dataset.status = latest.status;
        node.className = `tick ${latest.status}`;
        node.textContent = TICKS[latest.status] ?? "";
        node.title = t(`tick.${latest.status}`) + (latest.error_reason ? `: ${latest.error_reason}` : "");
      }
      break;
    }
    case "typing":
      if (state.current?.conversation.id === event.conversation_id && event.user_id !== me.id) {
        const who = state.users.find((u) => u.id === event.user_id)?.name ?? "";
        $("typing").textContent = t("inbox.typing", { name: who });
        $("typing").hidden = false;
        clearTimeout(state.typingHide);
        state.typingHide = setTimeout(() => ($("typing").hidden = true), 4000);
      }
      break;
    default:
      break;
  }
}

async function start() {
  const [users, reasons, canned] = await Promise.all([
    api("/api/v1/agents").catch(() => []),
    api("/api/v1/contact-reasons").catch(() => []),
    api("/api/v1/canned-responses").catch(() => []),
  ]);
  Object.assign(state, { users, reasons, canned });
  await loadConversations();
  connect();
  const fromHash = location.hash.slice(1);
  if (fromHash) openConversation(fromHash);
}

start();
