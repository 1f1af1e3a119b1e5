// Segment editor: builds the filter tree, shows the live count as it changes, saves it.
import { api } from "./app.js";

const root = document.querySelector("[data-segment-editor]");
const data = JSON.parse(root.querySelector("[data-editor-data]").textContent);
const i18n = JSON.parse(document.querySelector("template[data-i18n]").innerHTML.trim());
const tr = (key) => i18n[key] ?? key;
const list = root.querySelector("[data-conditions]");
const matchSelect = root.querySelector("[data-match]");
const countEl = root.querySelector("[data-count]");
const msEl = root.querySelector("[data-count-ms]");
const errorEl = root.querySelector("[data-error]");

const FIELDS = ["display_name", "city", "province", "country", "phone", "email", "gender", "language"];
const OPS = {
  tag: ["any", "all", "none"],
  field: ["eq", "ne", "contains", "empty", "not_empty"],
  attribute: { text: ["eq", "ne", "contains", "empty", "not_empty"], number: ["eq", "gt", "gte", "lt", "lte", "empty", "not_empty"],
    date: ["eq", "gt", "gte", "lt", "lte", "empty", "not_empty"], boolean: ["eq", "empty", "not_empty"],
    choice: ["eq", "ne", "empty", "not_empty"], multi_choice: ["has", "empty", "not_empty"] },
  activity: ["within", "not_within", "never", "ever"],
  stage: ["in", "not_in"],
  channel: ["is", "is_not"],
};
const EVENTS = ["followed", "first_followed", "unfollowed", "inbound", "outbound", "conversation"];

let conditions = [];
if (data.segment) {
  matchSelect.value = data.segment.definition.match ?? "all";
  conditions = (data.segment.definition.conditions ?? []).filter((c) => c.type !== "group");
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of [].concat(children)) node.append(child);
  return node;
}

function select(options, value, onChange, label) {
  const node = el("select", { "aria-label": label, on: { change: (e) => onChange(e.target.value) } },
    options.map(([v, text]) => el("option", { value: v }, text)));
  node.value = value ?? options[0]?.[0] ?? "";
  return node;
}

function input(value, onChange, type = "text", label = "") {
  return el("input", { type, value: value ?? "", "aria-label": label, on: { input: (e) => onChange(e.target.value) } });
}

function fieldDef(key) { return data.fields.find((f) => f.key === key); }

function defaults(kind) {
  if (kind === "tag") return { type: "tag", op: "any", tag_ids: data.tags[0] ? [data.tags[0].id] : [] };
  if (kind === "attribute") {
    const f = data.fields[0];
    return { type: "attribute", key: f?.key ?? "", op: OPS.attribute[f?.type ?? "text"][0], value: "" };
  }
  if (kind === "field") return { type: "field", field: "city", op: "eq", value: "" };
  if (kind === "activity") return { type: "activity", event: "followed", op: "within", days: 30 };
  if (kind === "stage") return { type: "stage", op: "in", stages: ["active"] };
  return { type: "channel", op: "is", channel: "wechat" };
}

function typedValue(cond, raw) {
  const f = fieldDef(cond.key);
  if (f?.type === "number" && raw !== "" && !Number.isNaN(Number(raw))) return Number(raw);
  if (f?.type === "boolean") return raw === "true";
  return raw;
}

function row(cond, index) {
  const update = (patch) => { Object.assign(cond, patch); changed(); };
  const parts = [el("strong", {}, tr(`kind.${cond.type}`))];
  if (cond.type === "tag") {
    parts.push(select(OPS.tag.map((o) => [o, tr(`op.${o}`)]), cond.op, (v) => update({ op: v })));
    const multi = el("select", { multiple: "", "aria-label": tr("kind.tag"), size: Math.min(4, data.tags.length || 1),
      on: { change: (e) => update({ tag_ids: [...e.target.selectedOptions].map((o) => o.value) }) } },
      data.tags.map((t) => el("option", { value: t.id }, t.name)));
    for (const option of multi.options) option.selected = cond.tag_ids.includes(option.value);
    parts.push(multi);
  } else if (cond.type === "attribute") {
    parts.push(select(data.fields.map((f) => [f.key, f.label]), cond.key, (v) => {
      const f = fieldDef(v); update({ key: v, op: OPS.attribute[f.type][0], value: "" }); render();
    }));
    const f = fieldDef(cond.key);
    const ops = OPS.attribute[f?.type ?? "text"];
    parts.push(select(ops.map((o) => [o, tr(`op.${o}`)]), cond.op, (v) => { update({ op: v }); render(); }));
    if (!["empty", "not_empty"].includes(cond.op)) {
      if (f && ["choice", "multi_choice"].includes(f.type)) {
        parts.push(select(f.options.map((o) => [o, o]), cond.value, (v) => update({ value: v })));
        if (!cond.value) cond.value = f.options[0];
      } else if (f?.type === "boolean") {
        parts.push(select([["true", "✓"], ["false", "✗"]], String(cond.value), (v) => update({ value: v === "true" })));
        if (typeof cond.value !== "boolean") cond.value = true;
      } else {
        parts.push(input(cond.value, (v) => update({ value: typedValue(cond, v) }), f?.type === "number" ? "number" : "text"));
      }
    }
  } else if (cond.type === "field") {
    parts.push(select(FIELDS.map((f) => [f, tr(`field.${f}`)]), cond.field, (v) => update({ field: v })));
    parts.push(select(OPS.field.map((o) => [o, tr(`op.${o}`)]), cond.op, (v) => { update({ op: v }); render(); }));
    if (!["empty", "not_empty"].includes(cond.op)) parts.push(input(cond.value, (v) => update({ value: v })));
  } else if (cond.type === "activity") {
    parts.push(select(EVENTS.map((e) => [e, tr(`ev.${e}`)]), cond.event, (v) => update({ event: v })));
    parts.push(select(OPS.activity.map((o) => [o, tr(`op.${o}`)]), cond.op, (v) => { update({ op: v }); render(); }));
    if (["within", "not_within"].includes(cond.op)) {
      parts.push(input(cond.days, (v) => update({ days: Number(v) || null }), "number", tr("days")), tr("days"));
    }
  } else if (cond.type === "stage") {
    parts.push(select(OPS.stage.map((o) => [o, tr(`op.${o}`)]), cond.op, (v) => update({ op: v })));
    parts.push(select(["new", "active", "dormant", "lost"].map((s) => [s, tr(`stage.${s}`)]), cond.stages[0], (v) => update({ stages: [v] })));
  } else if (cond.type === "channel") {
    parts.push(select(OPS.channel.map((o) => [o, tr(`op.${o}`)]), cond.op, (v) => update({ op: v })));
    const choices = [["channel:wechat", "WeChat"], ["channel:whatsapp", "WhatsApp"], ...data.accounts.map((a) => [`account:${a.id}`, a.name])];
    const current = cond.account_id ? `account:${cond.account_id}` : `channel:${cond.channel}`;
    parts.push(select(choices, current, (v) => {
      const [kind, id] = v.split(":");
      update(kind === "account" ? { account_id: id, channel: null } : { channel: id, account_id: null });
    }));
  }
  parts.push(el("button", { type: "button", class: "link danger", on: { click: () => { conditions.splice(index, 1); render(); changed(); } } }, tr("remove")));
  return el("li", { class: "condition", "data-condition": cond.type }, parts);
}

function render() {
  list.replaceChildren(...conditions.map(row));
}

function definition() {
  return { type: "group", match: matchSelect.value, conditions };
}

let timer = null;
let seq = 0;
function changed() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    const mine = ++seq;
    try {
      const result = await api("/api/v1/segments/count", { method: "POST", body: JSON.stringify({ definition: definition() }) });
      if (mine !== seq) return; // a newer edit is being counted
      countEl.textContent = result.count.toLocaleString();
      msEl.textContent = `(${result.ms} ms)`;
      errorEl.textContent = "";
    } catch (error) {
      if (mine !== seq) return;
      countEl.textContent = "—";
      errorEl.textContent = error.message;
    }
  }, 250);
}

root.querySelector("[data-add]").addEventListener("click", () => {
  conditions.push(defaults(root.querySelector("[data-add-kind]").value));
  render();
  changed();
});
matchSelect.addEventListener("change", changed);

root.querySelector("[data-save]")?.addEventListener("click", async () => {
  const name = root.querySelector("[data-segment-name]").value;
  try {
    const body = JSON.stringify({ name, definition: definition() });
    const saved = data.segment
      ? await api(`/api/v1/segments/${data.segment.id}`, { method: "PATCH", body })
      : await api("/api/v1/segments", { method: "POST", body });
    window.location.href = `/contacts/segments?id=${saved.id}`;
  } catch (error) {
    errorEl.textContent = error.message;
  }
});

root.querySelector("[data-delete]")?.addEventListener("click", async () => {
  if (!window.confirm(tr("delete_confirm"))) return;
  await api(`/api/v1/segments/${data.segment.id}`, { method: "DELETE" });
  window.location.href = "/contacts/segments";
});

render();
changed();
