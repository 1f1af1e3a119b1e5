// The 360° contact page: merge into another contact, undo a merge, split an identity off.
import { api } from "./app.js";

const box = document.querySelector("[data-merge]");
const contactId = box?.dataset.contact ?? location.pathname.split("/").pop();
const errorBox = document.querySelector("[data-merge-error]");

let timer = null;
box?.querySelector("[data-merge-q]").addEventListener("input", (event) => {
  clearTimeout(timer);
  const q = event.target.value.trim();
  timer = setTimeout(async () => {
    const list = box.querySelector("[data-merge-results]");
    if (q.length < 2) { list.replaceChildren(); return; }
    const found = await api(`/api/v1/contacts?q=${encodeURIComponent(q)}&limit=8`);
    list.replaceChildren(...found.items.filter((c) => c.id !== contactId).map((c) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = `${c.display_name} ${c.phone ?? ""}`;
      button.addEventListener("click", async () => {
        if (!window.confirm(`${box.dataset.confirm ?? "Merge"} → ${c.display_name}?`)) return;
        try {
          await api(`/api/v1/contacts/${contactId}/merge`, { method: "POST", body: JSON.stringify({ into_id: c.id }) });
          window.location.href = `/contacts/${c.id}`;
        } catch (error) { errorBox.textContent = error.message; }
      });
      item.append(button);
      return item;
    }));
  }, 250);
});

document.addEventListener("click", async (event) => {
  const undo = event.target.closest("[data-undo]");
  if (undo) {
    try {
      await api(`/api/v1/contact-merges/${undo.dataset.undo}/undo`, { method: "POST" });
      window.location.reload();
    } catch (error) { window.alert(error.message); }
  }
  const split = event.target.closest("[data-split]");
  if (split && !event.defaultPrevented) {
    try {
      const created = await api(`/api/v1/contacts/${contactId}/identities/${split.dataset.split}/split`, { method: "POST" });
      window.location.href = `/contacts/${created.id}`;
    } catch (error) { window.alert(error.message); }
  }
});

document.querySelector("[data-refresh-profile]")?.addEventListener("click", async (event) => {
  await api(`/api/v1/contacts/${contactId}/refresh-profile`, { method: "POST" });
  event.target.disabled = true;
});
