// Automation console: rules, the flow editor with live validation and dry runs, menus. Talks to /api/v1/automation.
import { api } from "./app.js";

const $ = (id) => document.getElementById(id);
const strings = JSON.parse($("auto-i18n")?.textContent || "{}");
const base = "/api/v1/automation";

function showError(el, error) {
  if (!el) return;
  el.textContent = error ? String(error.message || error) : "";
  el.hidden = !error;
}

function stepItem(step) {
  const li = document.createElement("li");
  li.dataset.node = step.node_id;
  li.dataset.type = step.type;
  const head = document.createElement("strong");
  head.textContent = `${step.node_id} · ${step.type}`;
  const detail = document.createElement("code");
  detail.textContent = " " + JSON.stringify(step.detail);
  li.append(head, detail);
  return li;
}

// --- rules ----------------------------------------------------------------------------------

const ruleForm = $("rule-form");
if (ruleForm) {
  ruleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(ruleForm);
    const trigger = data.get("trigger");
    const keywords = String(data.get("keywords") || "").split(/[,，\n]/).map((s) => s.trim()).filter(Boolean)
      .map((text) => ({ text, match: data.get("match") }));
    const replies = String(data.get("replies") || "").split("\n").map((s) => s.trim()).filter(Boolean)
      .map((text) => ({ type: "text", text }));
    const body = {
      account_id: ruleForm.dataset.account, name: data.get("name"), trigger,
      keywords: trigger === "keyword" ? keywords : [], replies,
      scene: trigger === "scan" ? (data.get("scene") || null) : null,
      flow_id: data.get("flow_id") || null,
    };
    try {
      await api(`${base}/rules`, { method: "POST", body: JSON.stringify(body) });
      location.reload();
    } catch (error) { showError($("rule-error"), error); }
  });
}

for (const button of document.querySelectorAll("[data-delete-rule]")) {
  button.addEventListener("click", async (event) => {
    if (event.defaultPrevented) return;
    await api(`${base}/rules/${button.dataset.deleteRule}`, { method: "DELETE" });
    location.reload();
  });
}

const tryForm = $("try-form");
if (tryForm) {
  tryForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = new FormData(tryForm).get("text");
    const params = new URLSearchParams({ account_id: tryForm.dataset.account, text });
    const result = await api(`${base}/match?${params}`);
    $("try-result").textContent = result.matched
      ? `${strings.matched}: ${result.rule_name} (${result.keyword}, ${result.kind})` : strings.no_match;
  });
}

// --- flows ----------------------------------------------------------------------------------

const newFlow = $("new-flow");
if (newFlow) {
  newFlow.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(newFlow);
    try {
      const flow = await api(`${base}/flows`, { method: "POST", body: JSON.stringify({ name: data.get("name"), source: data.get("source") }) });
      location.href = `/automation/flows/${flow.id}`;
    } catch (error) { showError($("flow-error"), error); }
  });
}

const editor = document.querySelector(".flow-editor[data-flow]");
if (editor) {
  const flowId = editor.dataset.flow;
  const source = $("flow-source");
  const validation = $("validation");
  let timer = null;

  async function validate() {
    const result = await api(`${base}/flows/validate`, { method: "POST", body: JSON.stringify({ source: source.value }) });
    validation.textContent = result.valid ? strings.valid : result.errors.join("\n");
    validation.className = result.valid ? "muted valid" : "error";
    return result.valid;
  }
  source.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(validate, 300); });

  $("save-version")?.addEventListener("click", async () => {
    if (!(await validate())) return;
    try {
      const flow = await api(`${base}/flows/${flowId}/versions`, { method: "POST", body: JSON.stringify({ source: source.value }) });
      $("flow-version").textContent = `v${flow.current_version}`;
      validation.textContent = `${strings.saved} (v${flow.current_version})`;
    } catch (error) { validation.textContent = error.message; validation.className = "error"; }
  });

  $("dry-run").addEventListener("click", async () => {
    const replies = $("dry-replies").value.split("\n").map((s) => s.trim()).filter(Boolean);
    let contact = {};
    try { contact = JSON.parse($("dry-contact").value || "{}"); } catch { /* keep empty */ }
    const list = $("dry-steps");
    list.replaceChildren();
    try {
      const result = await api(`${base}/flows/${flowId}/dry-run`, {
        method: "POST", body: JSON.stringify({ source: source.value, replies, contact }),
      });
      list.replaceChildren(...result.steps.map(stepItem));
      $("dry-status").textContent = `${strings.status}: ${result.status}${result.error ? " — " + result.error : ""}`;
    } catch (error) { $("dry-status").textContent = error.message; }
  });

  for (const button of document.querySelectorAll("[data-run]")) {
    button.addEventListener("click", async () => {
      const run = await api(`${base}/runs/${button.dataset.run}`);
      $("run-steps").replaceChildren(...run.steps.map(stepItem));
    });
  }
  validate();
}

// --- menus ----------------------------------------------------------------------------------

const menuEditor = $("menu-editor");
if (menuEditor) {
  const account = menuEditor.dataset.account;
  const status = $("menu-status");
  async function save() {
    let body;
    try { body = JSON.parse($("menu-source").value); } catch (error) { status.textContent = error.message; status.className = "error"; return false; }
    try {
      await api(`${base}/menus/${account}`, { method: "PUT", body: JSON.stringify(body) });
      status.textContent = strings.saved; status.className = "muted";
      return true;
    } catch (error) { status.textContent = error.message; status.className = "error"; return false; }
  }
  $("menu-save")?.addEventListener("click", save);
  $("menu-publish")?.addEventListener("click", async () => {
    if (!(await save())) return;
    try {
      await api(`${base}/menus/${account}/publish`, { method: "POST" });
      status.textContent = strings.published; status.className = "muted";
    } catch (error) { status.textContent = error.message; status.className = "error"; }
  });
}

// --- knowledge base -------------------------------------------------------------------------

const articleForm = $("kb-article");
if (articleForm) {
  articleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(articleForm);
    const body = {
      title: data.get("title"), body: data.get("body"), answer: data.get("answer") || null,
      language: data.get("language"), category_id: data.get("category_id") || null,
      keywords: String(data.get("keywords") || "").split(/[,，]/).map((s) => s.trim()).filter(Boolean),
    };
    try {
      await api(`${base}/kb/articles`, { method: "POST", body: JSON.stringify(body) });
      location.reload();
    } catch (error) { showError($("kb-error"), error); }
  });
}
$("kb-category")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  await api(`${base}/kb/categories`, { method: "POST", body: JSON.stringify({ name: new FormData(event.target).get("name") }) });
  location.reload();
});
$("kb-bot")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  try {
    await api(`${base}/kb/bot`, { method: "PUT", body: JSON.stringify({ enabled: data.get("enabled") === "on", min_confidence: Number(data.get("min_confidence")) }) });
    $("kb-bot-status").textContent = strings.saved;
  } catch (error) { $("kb-bot-status").textContent = error.message; }
});
for (const button of document.querySelectorAll("[data-delete-article]")) {
  button.addEventListener("click", async (event) => {
    if (event.defaultPrevented) return;
    await api(`${base}/kb/articles/${button.dataset.deleteArticle}`, { method: "DELETE" });
    location.reload();
  });
}
