// Backups: the catalog's snapshots with filters and paging; per row, by role: browse,
// restore, verify, download, protect/unprotect, delete. "Back up now" for a source.

import { get, post, del, seg, query } from "../api.js";
import { h, clear, icon, badge, button, pageHeader, emptyState, loading, table, td, pager, toast, toastError,
  openDialog, confirmDialog, field, input, select, errorBox, guardDownload } from "../dom.js";
import { jobPanel, cancelRule } from "../jobs.js";
import * as fmt from "../format.js";

const PAGE_SIZE = 25;

export function downloadHref(id, path, format) {
  return `/api/backups/${seg(id)}/download${query({ path: path || "", format: format && format !== "tar" ? format : "" })}`;
}

export function browseHref(id, path = "") {
  const tail = path ? `/${path.split("/").filter(Boolean).map(encodeURIComponent).join("/")}` : "/";
  return `#/backups/${encodeURIComponent(id)}/browse${tail}`;
}

/** Starts a backup of `source` ({id, name}); a backup already running is followed instead. */
export async function startBackup(source, panel) {
  try {
    const job = await post("/api/backup", { source_id: source.id });
    panel.track(job);
    toast(`Backup of ${source.name} started.`, "info");
    return job;
  } catch (e) {
    if (e.code === "job_running" && e.jobId) {
      try {
        const job = await get(`/api/jobs/${seg(e.jobId)}`);
        if (job.kind === "backup") {
          panel.track(job);
          toast(`A backup of ${source.name} is already running; following it.`, "info");
          return job;
        }
      } catch {
        // fall through to the original error
      }
    }
    toastError(e);
    return null;
  }
}

/** The toast for a finished job. */
export function announce(job) {
  const r = job.result || {};
  if (job.state === "succeeded") {
    if (job.kind === "backup") toast(`Backup of ${job.params.source_name || "the source"} finished: snapshot ${fmt.shortId(r.snapshot_id)}${r.status === "partial" ? " (partial)" : ""}.`, r.status === "partial" ? "info" : "success");
    else if (job.kind === "restore") toast(`Restore finished: ${fmt.number(r.files)} files into ${r.target}.`, "success");
    else if (job.kind === "verify") toast(r.ok === false ? `Snapshot ${fmt.shortId(job.snapshot_id)} is damaged.` : `Snapshot ${fmt.shortId(job.snapshot_id)} verified: intact.`, r.ok === false ? "error" : "success");
    else toast(`${job.kind} finished.`, "success");
  } else if (job.state === "failed") {
    toast(`${job.kind[0].toUpperCase()}${job.kind.slice(1)} failed: ${job.error ? job.error.message : "unknown error"}`, "error");
  } else if (job.state === "cancelled") {
    toast(`${job.kind[0].toUpperCase()}${job.kind.slice(1)} cancelled.`, "info");
  }
}

/**
 * The restore dialog (dialog#restore-dialog). `snap` is a BackupDto (or {id, ...});
 * `path` an optional path inside the snapshot. The job goes to `panel`.
 */
export function restoreDialog(snap, panel, path = "") {
  const target = input({ id: "restore-target", name: "target", class: "input mono", placeholder: `restored/${fmt.shortId(snap.id)}`, autocomplete: "off", spellcheck: "false" });
  const inner = input({ id: "restore-path", name: "path", class: "input mono", value: path, placeholder: "everything", autocomplete: "off", spellcheck: "false" });
  const error = errorBox("restore-error");
  const submit = button("Start restore", null, { variant: "primary", id: "restore-submit", icon: "restore", mutating: true, type: "submit" });
  submit.setAttribute("form", "restore-form");
  const form = h("form", { id: "restore-form", class: "stack", novalidate: true },
    h("dl", { class: "kv" },
      h("dt", null, "Snapshot"), h("dd", { class: "mono" }, fmt.shortId(snap.id)),
      snap.source_name ? [h("dt", null, "Source"), h("dd", null, snap.source_name)] : null,
      snap.created_at ? [h("dt", null, "Taken"), h("dd", null, fmt.dateTime(snap.created_at, true))] : null,
      snap.size !== undefined ? [h("dt", null, "Size"), h("dd", null, `${fmt.bytes(snap.size)} · ${fmt.number(snap.file_count)} files`)] : null),
    field("Path inside the snapshot", inner, "A file or folder to restore; leave empty to restore everything."),
    field("Target directory on the server", target, "Absolute, or relative to the first allowed restore root. It must not exist yet or be empty. Leave empty for the default (<restore root>/<snapshot id>)."),
    error);
  const cancel = button("Cancel", () => d.close(), { variant: "ghost" });
  const d = openDialog({ id: "restore-dialog", title: "Restore snapshot", subtitle: "Files are written on the server; existing files are never overwritten.", content: form, actions: [cancel, submit] });
  target.focus();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.show(null);
    submit.disabled = true;
    try {
      const body = {};
      if (target.value.trim()) body.target = target.value.trim();
      if (inner.value.trim()) body.path = inner.value.trim().replace(/^\/+/, "");
      const job = await post(`/api/restore/${seg(snap.id)}`, body);
      d.close();
      panel.track(job);
      toast("Restore started.", "info");
    } catch (e) {
      error.show(e);
      submit.disabled = false;
      target.focus();
    }
  });
  return d;
}

export async function startVerify(snap, panel) {
  try {
    const job = await post(`/api/backups/${seg(snap.id)}/verify${query({ read_data: "true" })}`);
    panel.track(job);
    toast(`Verifying snapshot ${fmt.shortId(snap.id)}…`, "info");
  } catch (e) {
    toastError(e);
  }
}

function statusBadge(b) {
  if (b.status === "ok") return badge("OK", "ok");
  if (b.status === "partial") return badge("Partial", "warn", (b.warnings || []).slice(0, 5).join("\n"));
  return badge(b.status, "neutral");
}

function verifiedCell(b) {
  if (!b.verified_at) return h("span", { class: "muted" }, "Not yet");
  const damaged = (b.verify_result || "").startsWith("damaged");
  return h("span", { title: `${b.verify_result || ""} · ${fmt.dateTime(b.verified_at, true)}` },
    badge(damaged ? "Damaged" : "Intact", damaged ? "danger" : "ok"), h("span", { class: "sub" }, fmt.relative(b.verified_at)));
}

export async function render(ctx) {
  const main = ctx.main;
  const canRestore = ctx.can("restore");
  const canManage = ctx.can("manage_system");
  const canBackup = ctx.can("backup");
  const initial = ctx.route.query;
  const filters = {
    source_id: initial.get("source_id") || "",
    status: initial.get("status") || "",
    from: initial.get("from") || "",
    to: initial.get("to") || "",
  };
  let offset = 0;

  const sources = await get("/api/sources", null, { signal: ctx.signal }).catch((e) => { if (e.status === 403) return []; throw e; });
  const sourceList = Array.isArray(sources) ? sources : sources.items || [];

  const panel = jobPanel(ctx, { onDone: (job) => { announce(job); load(); }, canCancel: cancelRule(ctx) });

  const headerActions = [];
  if (canBackup && sourceList.length) {
    const pick = select(sourceList.map((s) => [String(s.id), s.name]), { id: "backup-source", class: "input inline-select", value: filters.source_id || String(sourceList[0].id) });
    const go = button("Back up now", () => {
      const s = sourceList.find((x) => String(x.id) === pick.value);
      if (s) startBackup(s, panel);
    }, { variant: "primary", icon: "play", mutating: true, id: "backup-now" });
    headerActions.push(h("label", { class: "sr-only", for: "backup-source" }, "Source to back up"), pick, go);
  }
  main.append(pageHeader("Backups", "Every snapshot in the catalog, newest first.", ...headerActions));
  main.append(panel.el);

  // Filters
  const fSource = select([["", "All sources"], ...sourceList.map((s) => [String(s.id), s.name])], { id: "filter-source", value: filters.source_id });
  const fStatus = select([["", "Any status"], ["ok", "OK"], ["partial", "Partial"]], { id: "filter-status", value: filters.status });
  const fFrom = input({ type: "date", id: "filter-from", value: filters.from });
  const fTo = input({ type: "date", id: "filter-to", value: filters.to });
  const apply = () => {
    filters.source_id = fSource.value;
    filters.status = fStatus.value;
    filters.from = fFrom.value;
    filters.to = fTo.value;
    offset = 0;
    load(true);
  };
  for (const c of [fSource, fStatus, fFrom, fTo]) c.addEventListener("change", apply);
  const reset = button("Reset", () => {
    fSource.value = ""; fStatus.value = ""; fFrom.value = ""; fTo.value = "";
    apply();
  }, { variant: "ghost", small: true, id: "filter-reset" });
  const filterBar = h("form", { class: "filters", role: "search", "aria-label": "Filter backups", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
    fieldOf("Source", fSource, "wide"), fieldOf("Status", fStatus), fieldOf("From", fFrom), fieldOf("To", fTo),
    h("div", { class: "filter-actions" }, reset, button("Refresh", () => load(true), { variant: "ghost", small: true, icon: "refresh", dataset: { action: "refresh" } })));
  const body = h("div", null, loading());
  main.append(h("section", { class: "card", "aria-label": "Backups" }, filterBar, body));

  function row(b) {
    const actions = [];
    if (canRestore) {
      actions.push(
        h("a", { class: "btn btn-sm btn-icon btn-ghost", href: browseHref(b.id), title: "Browse files", "aria-label": `Browse snapshot ${fmt.shortId(b.id)}`, dataset: { action: "browse" } }, icon("browse")),
        button("Restore", () => restoreDialog(b, panel), { small: true, variant: "ghost", iconOnly: true, icon: "restore", mutating: true, dataset: { action: "restore" } }),
        button("Verify", () => startVerify(b, panel), { small: true, variant: "ghost", iconOnly: true, icon: "verify", mutating: true, dataset: { action: "verify" } }),
        guardDownload(h("a", { class: "btn btn-sm btn-icon btn-ghost", href: downloadHref(b.id), download: "", title: "Download (tar)", "aria-label": `Download snapshot ${fmt.shortId(b.id)} as tar`, dataset: { action: "download" } }, icon("download"))));
    }
    if (canManage) {
      if (b.protected) {
        actions.push(button("Unprotect", () => protect(b, false), { small: true, variant: "ghost", iconOnly: true, icon: "unprotect", mutating: true, dataset: { action: "unprotect" } }));
      } else {
        actions.push(button("Protect", () => protect(b, true), { small: true, variant: "ghost", iconOnly: true, icon: "protect", mutating: true, dataset: { action: "protect" } }));
      }
      actions.push(button(b.protected ? "Delete (unprotect first)" : "Delete", () => remove(b), {
        small: true, variant: "ghost", iconOnly: true, icon: "delete", mutating: true, class: "btn-danger-ghost", disabled: b.protected, dataset: { action: "delete" },
      }));
    }
    return h("tr", { dataset: { backupId: b.id, protected: String(b.protected) } },
      td(h("span", null, fmt.shortId(b.id), b.protected ? h("span", { class: "lock", title: "Protected: never removed by retention" }, icon("protect")) : null), "id", { title: b.id }),
      td(b.source_name),
      td(h("span", { title: fmt.dateTime(b.created_at, true) }, fmt.dateTime(b.created_at), h("span", { class: "sub" }, fmt.relative(b.created_at))), "time"),
      td(statusBadge(b)),
      td(fmt.bytes(b.size), "num"),
      td(fmt.number(b.file_count), "num"),
      td(fmt.bytes(b.bytes_added), "num", { title: `${fmt.bytes(b.stored_bytes_added)} stored after compression` }),
      td(fmt.duration(b.duration_ms), "num"),
      td(verifiedCell(b)),
      actions.length ? td(h("div", { class: "actions-inner" }, actions), "actions") : null);
  }

  async function protect(b, on) {
    try {
      await post(`/api/backups/${seg(b.id)}/${on ? "protect" : "unprotect"}`);
      toast(on ? `Snapshot ${fmt.shortId(b.id)} is protected from retention.` : `Snapshot ${fmt.shortId(b.id)} is no longer protected.`, "success");
      load();
    } catch (e) {
      toastError(e);
    }
  }

  async function remove(b) {
    const ok = await confirmDialog({
      title: "Delete this snapshot?",
      message: `Snapshot ${fmt.shortId(b.id)} of ${b.source_name}, taken ${fmt.dateTime(b.created_at)}, will be removed from the catalog and the repository. This cannot be undone.`,
      confirm: "Delete snapshot",
      danger: true,
      id: "delete-dialog",
    });
    if (!ok) return;
    try {
      await del(`/api/backups/${seg(b.id)}`);
      toast(`Snapshot ${fmt.shortId(b.id)} deleted.`, "success");
      load(true);
    } catch (e) {
      toastError(e);
    }
  }

  let seq = 0;
  async function load(explicit = false) {
    const mine = ++seq;
    if (explicit) ctx.busy();
    let page;
    try {
      page = await get("/api/backups", {
        source_id: filters.source_id,
        status: filters.status,
        from: fmt.dayStart(filters.from),
        to: fmt.dayEnd(filters.to),
        limit: PAGE_SIZE,
        offset,
      }, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      clear(body).append(h("div", { class: "card-body" }, h("div", { class: "form-error", role: "alert" }, icon("alert"), h("span", null, e.message))));
      ctx.ready();
      return;
    }
    if (mine !== seq) return;
    if (page.items.length === 0 && offset > 0 && page.total > 0) {
      offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE);
      load(explicit);
      return;
    }
    clear(body);
    const filtered = filters.source_id || filters.status || filters.from || filters.to;
    if (!page.items.length) {
      body.append(filtered
        ? emptyState("backups", "No backups match these filters", "Change or reset the filters to see more.", button("Reset filters", () => reset.click(), { variant: "ghost", dataset: { action: "reset" } }))
        : emptyState("backups", "No backups yet", canBackup ? "Pick a source and choose “Back up now”, or wait for its schedule." : "Snapshots appear here once a backup has run."));
    } else {
      const cols = [["Snapshot"], ["Source"], ["Taken"], ["Status"], ["Size", "num"], ["Files", "num"], ["Added", "num"], ["Duration", "num"], ["Verified"]];
      if (canRestore || canManage) cols.push(["Actions", "actions"]);
      body.append(table(cols, page.items.map(row), { label: "Backups" }),
        pager({ offset, limit: PAGE_SIZE, total: page.total, count: page.items.length, onPage: (o) => { offset = o; load(true); } }));
    }
    ctx.ready();
  }

  // Jobs that are already running (started elsewhere) show up in Activity too.
  get("/api/jobs", { state: "running", limit: 20 }, { signal: ctx.signal })
    .then((p) => { for (const j of p.items || []) if (["backup", "restore", "verify"].includes(j.kind)) panel.track(j); })
    .catch(() => {});

  await load(true);
}

function fieldOf(label, control, cls) {
  return h("div", { class: ["field", cls] }, h("label", { for: control.id }, label), control);
}
