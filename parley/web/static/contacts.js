// Contact list: selection and bulk actions (tag, untag, assign owner, export) through the REST API.
import { api } from "./app.js";

const bar = document.querySelector("[data-bulk]");
const table = document.querySelector(".contacts-table");
const boxes = () => [...document.querySelectorAll("[data-select]")];
const chosen = () => boxes().filter((box) => box.checked).map((box) => box.value);
const allMatching = document.querySelector("[data-bulk-all]");
const errorBox = document.querySelector("[data-bulk-error]");

function refresh() {
  if (!bar) return;
  const n = chosen().length;
  bar.hidden = n === 0;
  bar.querySelector("[data-bulk-count]").textContent = `${n} ✓`;
}

document.querySelector("[data-select-all]")?.addEventListener("change", (event) => {
  for (const box of boxes()) box.checked = event.target.checked;
  refresh();
});
for (const box of boxes()) box.addEventListener("change", refresh);

function selection() {
  if (allMatching?.checked) {
    const params = new URLSearchParams(table.dataset.keptQuery);
    return {
      all_matching: true,
      q: params.get("q") ?? "",
      tag_id: params.get("tag_id") || null,
      segment_id: params.get("segment_id") || null,
      stage: params.get("stage") ?? "",
    };
  }
  return { contact_ids: chosen() };
}

const actions = {
  tag: () => api("/api/v1/contacts/bulk/tag", {
    method: "POST", body: JSON.stringify({ ...selection(), tag_ids: [bar.querySelector("[data-bulk-tag]").value] }),
  }),
  untag: () => api("/api/v1/contacts/bulk/untag", {
    method: "POST", body: JSON.stringify({ ...selection(), tag_ids: [bar.querySelector("[data-bulk-tag]").value] }),
  }),
  owner: () => api("/api/v1/contacts/bulk/owner", {
    method: "POST", body: JSON.stringify({ ...selection(), owner_id: bar.querySelector("[data-bulk-owner]").value || null }),
  }),
};

bar?.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-bulk-action]");
  if (button) {
    errorBox.textContent = "";
    try {
      await actions[button.dataset.bulkAction]();
      window.location.reload();
    } catch (error) {
      errorBox.textContent = error.message;
    }
  }
  const exporter = event.target.closest("[data-bulk-export]");
  if (exporter) {
    event.preventDefault();
    const params = allMatching?.checked ? table.dataset.keptQuery : `ids=${chosen().join(",")}`;
    window.location.href = `/api/v1/contacts/export?format=${exporter.dataset.bulkExport}&${params}`;
  }
});
refresh();
