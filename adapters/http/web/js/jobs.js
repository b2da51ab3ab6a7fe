// Background jobs: a progress card per job (`[data-job-id][data-job-state]` with a
// <progress> inside) and polling until the job is final.

import { get, post, seg } from "./api.js";
import { h, icon, badge, button, clear, toastError } from "./dom.js";
import * as fmt from "./format.js";

export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export const STATE_TONE = { queued: "neutral", running: "info", succeeded: "ok", failed: "danger", cancelled: "warn" };
const KIND_ICON = { backup: "backups", restore: "restore", verify: "verify", prune: "delete", check: "verify", copy: "copy", import: "database" };

export function jobTitle(job) {
  const p = job.params || {};
  switch (job.kind) {
    case "backup": return `Backup of ${p.source_name || `source ${job.source_id ?? ""}`}`;
    case "restore": return `Restore of ${fmt.shortId(job.snapshot_id)}${p.path ? ` / ${p.path}` : ""}`;
    case "verify": return `Verify ${fmt.shortId(job.snapshot_id)}${p.read_data ? " (read data)" : ""}`;
    case "prune": return "Repository prune";
    case "check": return `Repository check${p.share_percent ? ` (${p.share_percent}%)` : ""}`;
    case "copy": return `Copy to replica ${p.replica || ""}`;
    case "import": return `Import of the prototype${p.dry_run ? " (dry run)" : ""}${p.dir ? ` from ${p.dir}` : ""}`;
    default: return job.kind;
  }
}

function percentOf(job) {
  if (job.state === "succeeded") return 100;
  const p = job.progress || {};
  if (p.totals_final && p.bytes_total) return (100 * p.bytes_done) / p.bytes_total;
  if (p.totals_final && p.files_total) return (100 * p.files_done) / p.files_total;
  return null;
}

function summary(job) {
  const p = job.progress || {};
  const r = job.result || {};
  if (job.state === "failed") return job.error ? job.error.message : "The job failed.";
  if (job.state === "cancelled") return "Cancelled.";
  if (job.state === "queued") return `Waiting to start (queued ${fmt.relative(job.created_at)}).`;
  if (job.state === "succeeded") {
    const took = job.started_at && job.finished_at ? fmt.duration(new Date(job.finished_at) - new Date(job.started_at)) : "";
    const parts = [];
    if (job.kind === "backup") {
      parts.push(`Snapshot ${fmt.shortId(r.snapshot_id || job.snapshot_id)}`);
      if (r.files !== undefined) parts.push(`${fmt.number(r.files)} files`);
      if (r.bytes !== undefined) parts.push(fmt.bytes(r.bytes));
      if (r.bytes_added !== undefined) parts.push(`${fmt.bytes(r.bytes_added)} new`);
      if (r.status === "partial") parts.push(`partial: ${(r.warnings || []).length} warnings`);
    } else if (job.kind === "restore") {
      if (r.files !== undefined) parts.push(`${fmt.number(r.files)} files, ${fmt.bytes(r.bytes)}`);
      if (r.target) parts.push(`into ${r.target}`);
    } else if (job.kind === "verify") {
      parts.push(r.ok === false ? `Damaged: ${(r.problems || []).join("; ")}` : "Intact");
      if (r.bytes_read) parts.push(`${fmt.bytes(r.bytes_read)} read`);
    } else if (job.kind === "import") {
      parts.push(`${fmt.number(r.imported || 0)} backups ${r.dry_run ? "would be imported" : "imported"}`);
      if (r.already_imported) parts.push(`${fmt.number(r.already_imported)} already there`);
      if ((r.skipped || []).length) parts.push(`skipped: ${r.skipped.join("; ")}`);
      parts.push(`${fmt.number(r.users || 0)} users, ${fmt.number(r.audit_rows || 0)} audit rows`);
    }
    if (took) parts.push(`in ${took}`);
    return parts.join(" · ");
  }
  const parts = [];
  parts.push(p.files_total !== undefined ? `${fmt.number(p.files_done)} / ${fmt.number(p.files_total)} files` : `${fmt.number(p.files_done)} files`);
  parts.push(p.bytes_total !== undefined ? `${fmt.bytes(p.bytes_done)} / ${fmt.bytes(p.bytes_total)}` : fmt.bytes(p.bytes_done));
  if (p.rate_bytes_per_sec) parts.push(`${fmt.bytes(p.rate_bytes_per_sec)}/s`);
  if (p.eta_secs !== undefined && p.eta_secs !== null) parts.push(`about ${fmt.eta(p.eta_secs)} left`);
  if (!p.totals_final) parts.push("counting…");
  return parts.join(" · ");
}

/**
 * A card for `job`. `opts.cancel` (bool) shows a cancel button while it runs;
 * `opts.onDismiss` a close button once final.
 */
export function jobCard(job, opts = {}) {
  const el = h("div", { class: "job" });
  el.jobOpts = opts;
  updateJobCard(el, job);
  return el;
}

export function updateJobCard(el, job) {
  const opts = el.jobOpts || {};
  el.dataset.jobId = job.id;
  el.dataset.jobState = job.state;
  el.className = `job job-${job.state}`;
  const pct = percentOf(job);
  let prog = el.querySelector("progress");
  if (!prog) prog = h("progress", { max: "100" });
  if (pct === null) prog.removeAttribute("value");
  else prog.value = Math.max(0, Math.min(100, pct));
  prog.setAttribute("aria-label", `${jobTitle(job)}: ${pct === null ? job.state : `${Math.round(pct)}%`}`);
  const actions = [];
  if (opts.cancel && !FINAL.has(job.state)) {
    actions.push(button(job.cancel_requested ? "Cancelling…" : "Cancel", async (ev) => {
      ev.currentTarget.disabled = true;
      try {
        await post(`/api/jobs/${seg(job.id)}/cancel`);
      } catch (e) {
        toastError(e);
      }
    }, { small: true, variant: "ghost", mutating: true, disabled: job.cancel_requested, dataset: { action: "cancel" } }));
  }
  if (opts.logLink !== false) {
    actions.push(h("a", { class: "btn btn-ghost btn-sm", href: `#/tasks/${encodeURIComponent(job.id)}`, dataset: { action: "log" } }, "Log"));
  }
  if (opts.onDismiss && FINAL.has(job.state)) {
    actions.push(button("Dismiss", () => { el.remove(); opts.onDismiss(job); }, { small: true, variant: "ghost", iconOnly: true, icon: "x", dataset: { action: "dismiss" } }));
  }
  clear(el);
  el.append(
    h("div", { class: "job-head" },
      h("span", { class: "job-icon" }, icon(KIND_ICON[job.kind] || "clock")),
      h("span", { class: "job-title" }, jobTitle(job)),
      badge(job.state, STATE_TONE[job.state] || "neutral"),
      pct !== null && !FINAL.has(job.state) ? h("span", { class: "job-pct" }, `${Math.floor(pct)}%`) : null,
      h("span", { class: "job-actions" }, actions)),
    prog,
    h("div", { class: ["job-meta", job.state === "failed" ? "text-danger" : ""] }, summary(job)));
}

/**
 * The permission cancelling a job of `kind` needs: the one starting it needs (the
 * server's `permission_for` in application/src/jobs.rs, mirrored exactly).
 */
export function cancelPermission(kind) {
  switch (kind) {
    case "backup": return "backup";
    case "restore":
    case "verify": return "restore";
    case "copy": return "backup";
    case "prune":
    case "check": return "manage_system";
    case "import": return "manage_users";
    default: return null;
  }
}

/** `(job) => bool`: whether the signed-in user may cancel `job` (its kind's permission). */
export function cancelRule(ctx) {
  return (job) => {
    const needed = cancelPermission(job && job.kind);
    return Boolean(needed && ctx.can(needed));
  };
}

/** Marks a card whose job the server no longer knows (or no longer shows this user). */
export function markGone(el, e) {
  el.dataset.jobGone = "true";
  el.classList.add("job-gone");
  for (const b of el.querySelectorAll('[data-action="cancel"]')) b.remove();
  const opts = el.jobOpts || {};
  const actions = el.querySelector(".job-actions");
  if (opts.onDismiss && actions && !actions.querySelector('[data-action="dismiss"]')) {
    actions.append(button("Dismiss", () => { el.remove(); opts.onDismiss(null); }, { small: true, variant: "ghost", iconOnly: true, icon: "x", dataset: { action: "dismiss" } }));
  }
  const meta = el.querySelector(".job-meta");
  if (meta) {
    meta.textContent = e && e.status === 403
      ? "This job is no longer shown to you; its progress is not followed any more."
      : "This job is no longer known to the server; its progress is not followed any more.";
  }
}

const MAX_BACKOFF = 30_000;

/**
 * Polls GET /api/jobs/{id} every `interval` ms through the page context (so polling
 * stops when the page is left) until the job is final. A 404 or 403 ends the polling
 * (`onGone(error)`); a 5xx, a 429 or a network failure backs off (doubling, up to
 * 30 s) and tries again; a 401 ends it (the session is gone and the login page shows).
 */
export function watchJob(ctx, id, { interval = 500, onUpdate, onDone, onGone } = {}) {
  let failures = 0;
  const tick = async () => {
    if (ctx.left) return;
    let job;
    try {
      job = await get(`/api/jobs/${seg(id)}`, null, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      if (e.status === 401) return;
      if (e.status === 404 || e.status === 403) {
        if (onGone) onGone(e);
        return;
      }
      failures += 1;
      ctx.timeout(tick, Math.min(MAX_BACKOFF, interval * 2 ** Math.min(failures + 1, 10)));
      return;
    }
    failures = 0;
    if (ctx.left) return;
    if (onUpdate) onUpdate(job);
    if (FINAL.has(job.state)) {
      if (onDone) onDone(job);
    } else {
      ctx.timeout(tick, interval);
    }
  };
  tick();
}

/**
 * The "Activity" list of a page: jobs started from it (and ones found running), each
 * followed until final. `onDone(job)` runs once per job when it ends. `canCancel(job)`
 * decides whether a job gets a cancel button: none unless given (pass
 * `cancelRule(ctx)`).
 */
export function jobPanel(ctx, { onDone, canCancel = () => false } = {}) {
  const list = h("div", { class: "job-list", "aria-live": "polite" });
  const el = h("section", { class: "card activity", "aria-label": "Activity", hidden: true },
    h("div", { class: "card-header" }, h("h2", null, "Activity")),
    h("div", { class: "card-body" }, list));
  const cards = new Map();
  const refreshVisibility = () => { el.hidden = list.childElementCount === 0; };
  const track = (job) => {
    let card = cards.get(job.id);
    if (card && card.isConnected) {
      updateJobCard(card, job);
    } else {
      card = jobCard(job, { cancel: canCancel(job), onDismiss: () => { cards.delete(job.id); refreshVisibility(); } });
      cards.set(job.id, card);
      list.prepend(card);
    }
    refreshVisibility();
    if (!FINAL.has(job.state) && !card.watching) {
      card.watching = true;
      watchJob(ctx, job.id, {
        onUpdate: (j) => updateJobCard(card, j),
        onDone: (j) => { card.watching = false; if (onDone) onDone(j); },
        onGone: (e) => { card.watching = false; markGone(card, e); },
      });
    }
  };
  return { el, track, has: (id) => cards.has(id) };
}
