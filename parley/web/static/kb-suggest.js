// Knowledge-base suggestions in the agent console: the best articles for the customer's latest message,
// refreshed when the conversation or its messages change; one click sends an answer.
import { api } from "./app.js";

const box = document.getElementById("kb-suggestions");
const messages = document.getElementById("messages");
let timer = null;
let shown = "";

function currentId() {
  return location.hash.slice(1);
}

async function refresh() {
  const id = currentId();
  if (!box || !id) return;
  let hits = [];
  try {
    hits = await api(`/api/v1/automation/suggestions?conversation_id=${encodeURIComponent(id)}`);
  } catch { hits = []; }
  const key = id + JSON.stringify(hits.map((h) => h.article_id));
  if (key === shown) return;
  shown = key;
  box.hidden = !hits.length;
  const title = document.createElement("h4");
  title.textContent = box.dataset.title;
  const list = document.createElement("ul");
  list.className = "kb-list";
  for (const hit of hits) {
    const item = document.createElement("li");
    item.dataset.article = hit.article_id;
    const name = document.createElement("strong");
    name.textContent = hit.title;
    const answer = document.createElement("p");
    answer.textContent = hit.answer;
    const send = document.createElement("button");
    send.type = "button";
    send.className = "primary kb-send";
    send.textContent = box.dataset.send;
    send.addEventListener("click", async () => {
      send.disabled = true;
      try {
        await api(`/api/v1/conversations/${id}/messages`, { method: "POST", body: JSON.stringify({ type: "text", text: hit.answer }) });
      } catch (error) {
        const composerError = document.getElementById("composer-error");
        if (composerError) composerError.textContent = error.message;
      } finally { send.disabled = false; }
    });
    const insert = document.createElement("button");
    insert.type = "button";
    insert.className = "link";
    insert.textContent = box.dataset.insert;
    insert.addEventListener("click", () => {
      const composer = document.getElementById("composer-text");
      composer.value = hit.answer;
      composer.focus();
    });
    item.append(name, answer, send, " ", insert);
    list.append(item);
  }
  box.replaceChildren(title, list);
}

function soon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 250);
}

window.addEventListener("hashchange", soon);
if (messages) new MutationObserver(soon).observe(messages, { childList: true });
soon();
