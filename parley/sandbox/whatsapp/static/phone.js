// The customer's phone: polls the simulator's control API and posts user actions.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { accounts: [], waba: null, number: null, user: null, lastDraw: "" };

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

function initials(name) {
  return (name || "?").split(/\s+/).map((p) => p[0]).join("").slice(0, 2).toUpperCase();
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function currentAccount() {
  return state.accounts.find((a) => a.business_account_id === state.waba);
}

function drawSidebar() {
  const select = $("number");
  const options = [];
  for (const account of state.accounts) {
    for (const n of account.phone_numbers) {
      options.push([`${account.business_account_id}/${n.id}`, `${n.verified_name} · +${n.display_phone_number}`]);
    }
  }
  $("empty").hidden = options.length > 0;
  const key = options.map((o) => o[0]).join("|");
  if (select.dataset.key !== key) {
    select.replaceChildren(...options.map(([value, label]) => {
      const opt = el("option", null, label);
      opt.value = value;
      return opt;
    }));
    select.dataset.key = key;
  }
  if (!state.number && options.length) {
    [state.waba, state.number] = options[0][0].split("/");
  }
  if (state.number) select.value = `${state.waba}/${state.number}`;

  const account = currentAccount();
  const list = $("users");
  const users = account ? account.users : [];
  list.replaceChildren(...users.map((u) => {
    const li = el("li", u.wa_id === state.user ? "active" : "");
    li.append(el("div", "avatar", initials(u.name)));
    const label = el("div");
    label.append(el("span", null, u.name));
    const ids = [u.hide_phone ? "phone hidden" : `+${u.wa_id}`, u.username && `@${u.username}`, u.bsuid].filter(Boolean);
    label.append(el("small", null, ids.join(" · ")));
    li.append(label);
    li.addEventListener("click", () => { state.user = u.wa_id; state.lastDraw = ""; refresh(); });
    return li;
  }));
}

function ticks(status) {
  if (status === "failed") return el("span", "ticks failed", "⚠");
  if (status === "read") return el("span", "ticks read", "✓✓");
  if (status === "delivered") return el("span", "ticks", "✓✓");
  if (status === "sent") return el("span", "ticks", "✓");
  return el("span", "ticks", "🕓");
}

function mediaNode(item) {
  if (item.media_id) {
    if (item.type === "image" || item.type === "sticker") {
      const img = el("img");
      img.src = `/_sandbox/media/${encodeURIComponent(item.media_id)}`;
      img.alt = item.caption || item.type;
      return img;
    }
    const a = el("a", null, `📎 ${item.filename || item.type}`);
    a.href = `/_sandbox/media/${encodeURIComponent(item.media_id)}`;
    a.target = "_blank";
    return a;
  }
  if (item.link) {
    if (item.type === "image") {
      const img = el("img");
      img.src = item.link;
      img.alt = item.caption || "image";
      return img;
    }
    const a = el("a", null, `📎 ${item.filename || item.link}`);
    a.href = item.link;
    a.target = "_blank";
    a.rel = "noopener";
    return a;
  }
  return null;
}

function replyButton(label, action) {
  const button = el("button", null, label);
  button.type = "button";
  button.addEventListener("click", () => act(action));
  return button;
}

function bubble(item, byId) {
  if (item.type === "reaction") {
    const target = byId[item.reply_to];
    const who = item.direction === "in" ? "You" : "Business";
    const text = item.emoji ? `${who} reacted ${item.emoji}` : `${who} removed a reaction`;
    return el("div", "reaction", target ? `${text} to “${(target.text || target.type).slice(0, 30)}”` : text);
  }
  const node = el("div", `bubble ${item.direction === "in" ? "me" : "biz"}`);
  if (item.reply_to && byId[item.reply_to]) {
    const quoted = byId[item.reply_to];
    node.append(el("div", "quote", (quoted.text || quoted.caption || quoted.type || "").slice(0, 80)));
  }
  if (item.type === "template") node.append(el("div", "tag", `template · ${item.template_name}`));
  if (item.header) node.append(el("div", "head", item.header));
  const media = mediaNode(item);
  if (media) node.append(media);
  if (item.location) {
    const loc = item.location;
    const map = el("div", "map");
    map.append(el("strong", null, loc.name || "Shared location"));
    map.append(el("div", null, [loc.address, `${loc.latitude}, ${loc.longitude}`].filter(Boolean).join("\n")));
    node.append(map);
  }
  const text = item.text || item.caption;
  if (text) node.append(el("div", null, text));
  if (item.footer) node.append(el("div", "foot", item.footer));
  if (item.error) node.append(el("div", "err", `${item.error.code} ${item.error.title}`));
  if (item.direction === "out") {
    const actions = el("div", "actions");
    for (const b of item.buttons || []) {
      actions.append(replyButton(b.title, { type: "interactive", reply_type: "button_reply", reply_id: b.id, title: b.title, context_message_id: item.id }));
    }
    for (const r of item.rows || []) {
      actions.append(replyButton(`☰ ${r.title}`, { type: "interactive", reply_type: "list_reply", reply_id: r.id, title: r.title, description: r.description, context_message_id: item.id }));
    }
    for (const q of item.quick_replies || []) {
      actions.append(replyButton(q.title, { type: "button", payload: q.payload, text: q.title, context_message_id: item.id }));
    }
    if (actions.childElementCount) node.append(actions);
  }
  const meta = el("div", "meta", clock(item.timestamp));
  meta.append(ticks(item.status));
  node.append(meta);
  return node;
}

function drawChat(data) {
  const signature = JSON.stringify([data.items, data.window_open]);
  $("phone").hidden = false;
  $("pick").hidden = true;
  $("biz-name").textContent = `${data.phone_number.verified_name}`;
  $("avatar").textContent = initials(data.phone_number.verified_name);
  $("as-user").textContent = `you are ${data.user.name}`;
  $("window").textContent = data.window_open
    ? `24 h window open until ${clock(data.window_closes_at)}`
    : "window closed · business can only send templates";
  if (signature === state.lastDraw) return;
  state.lastDraw = signature;
  const chat = $("chat");
  const atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
  const byId = Object.fromEntries(data.items.map((i) => [i.id, i]));
  chat.replaceChildren(...data.items.map((i) => bubble(i, byId)));
  if (atBottom || chat.dataset.user !== data.user.wa_id) chat.scrollTop = chat.scrollHeight;
  chat.dataset.user = data.user.wa_id;
}

async function refresh() {
  try {
    const snapshot = await api("GET", "/_sandbox/state");
    state.accounts = snapshot.accounts;
    drawSidebar();
    if (state.user && state.waba) {
      const path = `/_sandbox/accounts/${state.waba}/users/${state.user}/conversation?phone_number_id=${state.number}`;
      drawChat(await api("GET", path));
    }
  } catch (err) {
    console.warn(err);
  }
}

async function act(action) {
  if (!state.user) return;
  await api("POST", `/_sandbox/accounts/${state.waba}/users/${state.user}/actions`, {
    ...action,
    to_phone_number_id: state.number,
    wait: false,
  });
  refresh();
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  act({ type: "text", text });
});

$("attach").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    const data = String(reader.result).split(",", 2)[1];
    act({ type: "image", data_base64: data, mime_type: file.type || "image/jpeg", filename: file.name });
    $("file").value = "";
  };
  reader.readAsDataURL(file);
});

const PLACES = [
  { latitude: 52.5200, longitude: 13.4050, name: "Alexanderplatz", address: "Alexanderplatz, 10178 Berlin" },
  { latitude: 48.8584, longitude: 2.2945, name: "Eiffel Tower", address: "Champ de Mars, 75007 Paris" },
  { latitude: 31.2304, longitude: 121.4737, name: "People's Square", address: "Huangpu, Shanghai" },
];
$("locate").addEventListener("click", () => {
  const place = PLACES[Math.floor(Math.random() * PLACES.length)];
  act({ type: "location", ...place });
});

$("number").addEventListener("change", (event) => {
  [state.waba, state.number] = event.target.value.split("/");
  state.user = null;
  state.lastDraw = "";
  $("phone").hidden = true;
  $("pick").hidden = false;
  refresh();
});

$("add-user").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { name: form.get("name"), wa_id: form.get("wa_id"), hide_phone: form.get("hide_phone") === "on" };
  if (form.get("bsuid")) body.bsuid = form.get("bsuid");
  if (form.get("username")) body.username = form.get("username");
  try {
    await api("POST", `/_sandbox/accounts/${state.waba}/users`, body);
    state.user = body.wa_id;
    event.target.reset();
    refresh();
  } catch (err) {
    alert(err.message);
  }
});

refresh();
setInterval(refresh, 1000);
