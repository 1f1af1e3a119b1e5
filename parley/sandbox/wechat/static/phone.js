// The phone page: pick an account and a follower, play the follower, watch what the account answers.
// Polls the simulator's /_sandbox JSON once a second; every DOM text goes through textContent.

const $ = (id) => document.getElementById(id);
const state = { appId: null, openid: null, lastId: 0, accounts: [], users: [], menu: null, user: null, busy: false };
const COLORS = ["#07c160", "#2f86eb", "#f5a623", "#e64340", "#8e6cef", "#10aeff"];

async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { "Content-Type": "application/json" },
    ...options,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error((data && data.detail) || response.statusText);
  return data;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function colorOf(text) {
  let h = 0;
  for (const c of text) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

function avatar(name) {
  const node = el("div", { class: "avatar", text: (name || "?").slice(0, 1).toUpperCase() });
  node.style.background = colorOf(name || "?");
  return node;
}

// --- accounts and users -------------------------------------------------------------------------

async function loadAccounts() {
  state.accounts = await api("/_sandbox/accounts");
  const select = $("account");
  const current = state.appId;
  select.replaceChildren(
    ...state.accounts.map((a) => el("option", { value: a.app_id, text: `${a.name} (${a.app_id})` })),
  );
  if (!state.accounts.length) {
    select.append(el("option", { text: "No accounts yet: POST /_sandbox/accounts" }));
    return;
  }
  state.appId = state.accounts.some((a) => a.app_id === current) ? current : state.accounts[0].app_id;
  select.value = state.appId;
  const account = state.accounts.find((a) => a.app_id === state.appId);
  $("account-info").textContent =
    `${account.original_id} · ${account.encryption_mode} mode · ${account.followers}/${account.users} following` +
    (account.webhook_url ? ` · → ${account.webhook_url}` : " · no webhook_url");
}

async function loadUsers() {
  if (!state.appId) return;
  const data = await api(`/_sandbox/accounts/${state.appId}/users?limit=300`);
  state.users = data.users;
  const filter = $("user-filter").value.trim().toLowerCase();
  const list = $("users");
  list.replaceChildren(
    ...state.users
      .filter((u) => !filter || u.nickname.toLowerCase().includes(filter) || u.openid.toLowerCase().includes(filter))
      .map((u) =>
        el(
          "li",
          { class: u.openid === state.openid ? "active" : "", onclick: () => selectUser(u.openid) },
          avatar(u.nickname),
          el(
            "div",
            { class: "who" },
            el("div", { text: u.nickname }, el("span", { class: u.subscribed ? "tag on" : "tag", text: u.subscribed ? "关注" : "未关注" })),
            el("div", { class: "small muted", text: u.openid }),
          ),
        ),
      ),
  );
  if (data.total > state.users.length) list.append(el("li", { class: "small muted", text: `… ${data.total - state.users.length} more` }));
}

function selectUser(openid) {
  state.openid = openid;
  state.lastId = 0;
  $("chat").replaceChildren();
  loadUsers();
  poll();
}

// --- the conversation ---------------------------------------------------------------------------

const EVENT_TEXT = {
  subscribe: (c) => (c.scene ? `You followed via QR scene “${c.scene}”` : "You followed the account 你关注了公众号"),
  unsubscribe: () => "You unfollowed 你取消了关注",
  scan: (c) => `You scanned QR scene “${c.scene}”`,
  click: (c) => `Menu: ${c.name || c.key}`,
  view: (c) => `Opened ${c.url}`,
};

function renderEntry(entry) {
  const c = entry.content || {};
  if (entry.direction === "system") {
    if (entry.type === "typing") return c.on ? el("div", { class: "system", text: "对方正在输入… typing" }) : null;
    return el("div", { class: "system notice", text: c.text || entry.type });
  }
  if (c.event) return el("div", { class: "system", text: (EVENT_TEXT[c.event] || ((x) => `${x.event} ${x.key || ""}`))(c) });
  const body = renderContent(entry.type, c);
  const account = state.accounts.find((a) => a.app_id === state.appId);
  const who = entry.direction === "in" ? state.user?.nickname || "me" : account?.name || "OA";
  const isCard = body.classList?.contains("card");
  const bubble = isCard ? body : el("div", { class: body.tagName === "IMG" ? "bubble media" : "bubble" }, body);
  if (entry.direction === "out") bubble.append(el("div", { class: "via", text: entry.via }));
  return el("div", { class: `row ${entry.direction}` }, avatar(who), bubble);
}

function mediaImage(mediaId, url) {
  const img = el("img", { alt: "image", src: url || `/_sandbox/media/${encodeURIComponent(mediaId)}` });
  // Images arrive after the scroll to the bottom; keep following the conversation.
  img.addEventListener("load", () => { const chat = $("chat"); if (chat.scrollHeight - chat.scrollTop - chat.clientHeight < img.height + 60) chat.scrollTop = chat.scrollHeight; });
  img.addEventListener("error", () => img.replaceWith(el("span", { text: `🖼️ image ${String(mediaId || "").slice(0, 12)}…` })));
  return img;
}

function card(title, description, foot, cover) {
  const node = el("div", { class: "card" });
  if (cover !== undefined) {
    const pic = el("div", { class: "cover" });
    if (cover) pic.style.backgroundImage = `url("${encodeURI(cover)}")`;
    node.append(pic);
  }
  node.append(el("div", { class: "body" }, el("h4", { text: title || "" }), description ? el("p", { text: description }) : null));
  if (foot) node.append(el("div", { class: "foot", text: foot }));
  return node;
}

function renderContent(type, c) {
  switch (type) {
    case "text":
      return document.createTextNode(c.content ?? "");
    case "image":
      return mediaImage(c.media_id, c.pic_url);
    case "voice":
      return el("span", { text: `🔊 voice${c.recognition ? ` · “${c.recognition}”` : ""}` });
    case "video":
    case "shortvideo":
      return card(c.title || "▶ Video", c.description, "视频");
    case "music":
      return card(`🎵 ${c.title || "Music"}`, c.description, c.musicurl || c.music_url || "音乐");
    case "news": {
      const articles = c.articles || [];
      const first = articles[0] || {};
      const node = card(first.title, first.description, first.url ? "阅读全文 Read more" : null, first.picurl || "");
      for (const more of articles.slice(1)) node.append(el("div", { class: "foot", text: more.title }));
      return node;
    }
    case "template": {
      const node = card("模板消息 Template", c.template_id, c.url ? "详情 Details" : null);
      const dl = el("dl");
      for (const [key, value] of Object.entries(c.data || {})) dl.append(el("dt", { text: key }), el("dd", { text: value?.value ?? "" }));
      node.querySelector(".body").append(dl);
      return node;
    }
    case "msgmenu": {
      const wrap = el("div", {}, el("div", { text: c.head_content || "" }));
      for (const option of c.list || []) {
        wrap.append(el("a", { class: "option", text: option.content, onclick: () => act({ type: "text", content: option.content, menu_option_id: option.id }) }));
      }
      if (c.tail_content) wrap.append(el("div", { text: c.tail_content }));
      return wrap;
    }
    case "location":
      return card(`📍 ${c.label || "Location"}`, `${c.latitude}, ${c.longitude}`);
    case "link":
      return card(`🔗 ${c.title}`, c.url);
    case "miniprogrampage":
      return card(c.title || "Mini program", c.pagepath, "小程序");
    default:
      return el("span", { text: `[${type}] ${JSON.stringify(c)}` });
  }
}

function renderUser(user, menu) {
  state.user = user;
  $("title").textContent = user.nickname;
  const window = user.window.grants.map((g) => `${g.kind}: ${g.remaining ?? "∞"} left`).join(" · ");
  $("subtitle").textContent = user.subscribed ? window || "window closed 窗口已关闭" : "not following 未关注";
  const follow = $("follow");
  follow.disabled = false;
  follow.textContent = user.subscribed ? "Unfollow" : "Follow";
  follow.classList.toggle("following", user.subscribed);
  for (const id of ["text", "send"]) $(id).disabled = !user.subscribed;
  renderMenu(user.subscribed ? menu : null);
}

function renderMenu(menu) {
  const buttons = (menu && menu.button) || [];
  $("toggle-menu").hidden = !buttons.length;
  const key = JSON.stringify(buttons);
  if ($("menu").dataset.key === key) return;
  $("menu").dataset.key = key;
  $("menu").hidden = !buttons.length;
  $("menu").replaceChildren(
    ...buttons.map((button) => {
      const item = el("div", { class: "item" });
      if (button.sub_button && button.sub_button.length) {
        const sub = el("div", { class: "submenu", hidden: "" }, ...button.sub_button.map((s) => el("button", { type: "button", text: s.name, onclick: () => { sub.hidden = true; pressMenu(s); } })));
        item.append(el("button", { type: "button", text: `≡ ${button.name}`, onclick: () => { sub.hidden = !sub.hidden; } }), sub);
      } else {
        item.append(el("button", { type: "button", text: button.name, onclick: () => pressMenu(button) }));
      }
      return item;
    }),
  );
}

async function pressMenu(button) {
  switch (button.type) {
    case "click":
      return act({ type: "click", key: button.key, name: button.name });
    case "view":
    case "miniprogram":
      act({ type: "view", url: button.url, name: button.name });
      return window.open(button.url, "_blank", "noopener");
    case "scancode_push":
    case "scancode_waitmsg": {
      const values = await ask(`Scan 扫码 · ${button.name}`, [["scan_result", "Scan result", "https://example.com/qr"]]);
      return values && act({ type: button.type, key: button.key, scan_result: values.scan_result });
    }
    case "pic_sysphoto":
    case "pic_photo_or_album":
    case "pic_weixin":
      return act({ type: button.type, key: button.key, count: 1 });
    case "location_select":
      return act({ type: "location_select", key: button.key });
    default:
      return act({ type: "click", key: button.key || button.media_id || button.article_id || button.name, name: button.name });
  }
}

// --- acting -------------------------------------------------------------------------------------

async function act(action) {
  if (!state.openid) return;
  try {
    const result = await api(`/_sandbox/accounts/${state.appId}/users/${state.openid}/actions`, { method: "POST", body: action });
    showPush(result);
  } catch (error) {
    $("push").replaceChildren(el("div", { class: "bad", text: String(error.message || error) }));
  }
  poll();
}

function showPush(result) {
  const box = $("push");
  box.classList.remove("muted");
  const attempts = (result.attempts || []).map((a) =>
    el("div", { class: "attempt" }, el("span", { text: `attempt ${a.attempt}` }), el("span", { class: a.status && a.status < 300 ? "ok" : "bad", text: a.status ? `HTTP ${a.status}` : a.error || "—" }), el("span", { class: "muted", text: `${a.elapsed_ms ?? ""} ms` })),
  );
  box.replaceChildren(
    el("div", { text: `${result.action} ${result.msg_id ? `· MsgId ${result.msg_id}` : ""}` }),
    ...attempts,
    result.reply_error ? el("div", { class: "bad", text: result.reply_error }) : null,
    result.reply ? el("div", { class: "ok", text: `passive reply: ${result.reply.type}` }) : null,
    el("h2", { text: "Query" }),
    el("pre", { text: new URLSearchParams(result.query || {}).toString() }),
    el("h2", { text: "Body (as sent)" }),
    el("pre", { text: result.body || "" }),
    result.raw_reply ? el("h2", { text: "Answer" }) : null,
    result.raw_reply ? el("pre", { text: result.raw_reply }) : null,
  );
}

function ask(title, fields) {
  const dialog = $("prompt");
  $("prompt-title").textContent = title;
  $("prompt-fields").replaceChildren(...fields.map(([name, label, value]) => el("label", { text: label }, el("input", { name, value: value ?? "" }))));
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      resolve(Object.fromEntries([...dialog.querySelectorAll("input")].map((i) => [i.name, i.value])));
    }, { once: true });
  });
}

const TRAY = {
  image: () => act({ type: "image" }),
  location: async () => {
    const v = await ask("Send location 发送位置", [["latitude", "Latitude", "31.2304"], ["longitude", "Longitude", "121.4737"], ["label", "Label", "上海市黄浦区人民广场"]]);
    return v && act({ type: "location", latitude: Number(v.latitude), longitude: Number(v.longitude), label: v.label });
  },
  link: async () => {
    const v = await ask("Share a link 分享链接", [["title", "Title", "Parley"], ["url", "URL", "https://example.com/"]]);
    return v && act({ type: "link", title: v.title, url: v.url, description: "" });
  },
  voice: async () => {
    const v = await ask("Voice message 语音", [["recognition", "Speech recognition text (may be empty)", "你好"]]);
    return v && act({ type: "voice", recognition: v.recognition });
  },
  scan: async () => {
    const v = await ask("Scan a parametric QR 扫描带参数二维码", [["scene", "Scene (id or string)", "123"]]);
    return v && act({ type: "scan", scene: v.scene });
  },
  location_report: () => act({ type: "location_report" }),
};

// --- polling ------------------------------------------------------------------------------------

async function poll() {
  if (state.busy || !state.appId || !state.openid) return;
  state.busy = true;
  try {
    const data = await api(`/_sandbox/accounts/${state.appId}/users/${state.openid}/conversation?after=${state.lastId}`);
    renderUser(data.user, data.menu);
    const chat = $("chat");
    const atBottom = state.lastId === 0 || chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
    for (const entry of data.entries) {
      state.lastId = Math.max(state.lastId, entry.id);
      const node = renderEntry(entry);
      if (node) chat.append(node);
    }
    if (data.entries.length && atBottom) chat.scrollTop = chat.scrollHeight;
  } catch (error) {
    console.warn(error);
  } finally {
    state.busy = false;
  }
}

function tick() {
  const now = new Date();
  $("clock").textContent = `${now.getHours()}:${String(now.getMinutes()).padStart(2, "0")}`;
}

async function refresh() {
  try {
    await loadAccounts();
    await loadUsers();
    if (!state.openid && state.users.length) selectUser(state.users[0].openid);
  } catch (error) {
    console.warn(error);
  }
}

$("account").addEventListener("change", (e) => { state.appId = e.target.value; state.openid = null; $("chat").replaceChildren(); refresh(); });
$("user-filter").addEventListener("input", loadUsers);
$("add-user").addEventListener("click", async () => {
  const v = await ask("New simulated user 新用户", [["nickname", "Nickname 昵称", "小明"], ["unionid", "UnionID (optional)", ""]]);
  if (!v || !state.appId) return;
  const user = await api(`/_sandbox/accounts/${state.appId}/users`, { method: "POST", body: { nickname: v.nickname, unionid: v.unionid || null, subscribed: false } });
  await loadUsers();
  selectUser(user.openid);
});
$("follow").addEventListener("click", () => act({ type: state.user?.subscribed ? "unfollow" : "follow" }));
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  act({ type: "text", content: text });
});
$("more").addEventListener("click", () => { $("tray").hidden = !$("tray").hidden; });
$("toggle-menu").addEventListener("click", () => { $("menu").hidden = !$("menu").hidden; });
for (const button of document.querySelectorAll("#tray button")) {
  button.addEventListener("click", () => { $("tray").hidden = true; TRAY[button.dataset.action](); });
}

tick();
setInterval(tick, 30_000);
await refresh();
setInterval(poll, 1000);
setInterval(refresh, 5000);
