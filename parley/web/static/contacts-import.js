// Import and follower-sync progress: polls the job while it runs, reloads once it has finished
// (the finished page lists the rejected rows, rendered by the server).
const section = document.querySelector("[data-import-id], [data-sync-id]");
const ACTIVE = new Set(["queued", "running", "profiles", "waiting_quota"]);

function set(id, value) {
  const node = document.getElementById(id);
  if (node) node.textContent = String(value);
}

async function poll(url, update) {
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return;
    const job = await response.json();
    update(job);
    if (!ACTIVE.has(job.status)) {
      window.location.reload();
      return;
    }
  } catch { /* offline for a moment: try again */ }
  window.setTimeout(() => poll(url, update), 1000);
}

function updateImport(job) {
  const total = Math.max(job.total_rows, job.processed_rows);
  const bar = document.getElementById("import-bar");
  if (bar) { bar.max = total || 1; bar.value = job.processed_rows; }
  set("import-processed", job.processed_rows);
  set("import-total", total);
  set("count-created", job.created_count);
  set("count-updated", job.updated_count);
  set("count-unchanged", job.unchanged_count);
  set("count-rejected", job.rejected_count);
}

function updateSync(job) {
  const bar = document.getElementById("sync-bar-followers");
  if (bar) { bar.max = job.total_followers || 1; bar.value = job.followers_seen; }
  const profiles = document.getElementById("sync-bar-profiles");
  if (profiles) { profiles.max = job.profiles_total || 1; profiles.value = job.profiles_fetched; }
  set("sync-followers", job.followers_seen);
  set("sync-total", job.total_followers);
  set("sync-created", job.contacts_created);
  set("sync-profiles", job.profiles_fetched);
  set("sync-profiles-total", job.profiles_total);
}

const status = document.querySelector("[data-status]")?.dataset.status;
if (section && ACTIVE.has(status)) {
  if (section.dataset.importId) {
    poll(`/api/v1/contacts/imports/${section.dataset.importId}`, updateImport);
  } else {
    poll(`/api/v1/contacts/sync/${section.dataset.syncId}`, updateSync);
  }
}
