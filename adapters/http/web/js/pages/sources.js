// Sources: the directories Coffer backs up. Add/edit with a live, human-readable preview
// of the cron schedule and of what a retention override would keep; back up now; pause,
// resume and delete; a source's last runs as charts (GET /api/sources/{id}/runs).

import { get, post, patch, del, seg } from "../api.js";
import { h, clear, icon, badge, button, pageHeader, emptyState, loading, table, td, toast, toastError,
  openDialog, confirmDialog, field, input, checkbox, errorBox, debounce } from "../dom.js";
import { jobPanel, cancelRule } from "../jobs.js";
import { announce, startBackup } from "./backups.js";
import { drawSourceRuns } from "../charts.js";
import * as fmt from "../format.js";

export const RULES = [
  ["max_backups", "Keep last", "snapshots"],
  ["keep_within_days", "Keep all within", "days"],
  ["keep_daily", "Daily", "days"],
  ["keep_weekly", "Weekly", "weeks"],
  ["keep_monthly", "Monthly", "months"],
  ["keep_yearly", "Yearly", "years"],
  ["max_age_days", "Remove older than", "days"],
];

/** Why a path is left out, as the preview says it. */
const REASONS = {
  pattern: "pattern",
  cache: "cache directory",
  other_file_system: "another file system",
  too_large: "too large",
};

const PRESETS = [
  ["Every hour", "0 * * * *"],
  ["Daily 02:00", "0 2 * * *"],
  ["Weekdays 22:30", "30 22 * * 1-5"],
  ["Sundays 03:00", "0 3 * * 0"],
  ["Manual only", ""],
];

/** The number inputs of a rule set, ids `<prefix>-max-backups`, ... */
export function retentionInputs(prefix, values = {}) {
  const inputs = {};
  const fields = RULES.map(([key, label, unit]) => {
    const el = input({ type: "number", min: "0", max: "100000", step: "1", inputmode: "numeric", id: `${prefix}-${key.replaceAll("_", "-")}`, name: key, value: String(values[key] ?? 0) });
    inputs[key] = el;
    return field(`${label} (${unit})`, el);
  });
  const read = () => Object.fromEntries(RULES.map(([key]) => [key, Math.max(0, Number.parseInt(inputs[key].value, 10) || 0)]));
  const write = (v) => { for (const [key] of RULES) inputs[key].value = String((v && v[key]) ?? 0); };
  return { inputs, read, write, grid: h("div", { class: "form-grid-4 pairs" }, fields) };
}

/** Renders a RetentionReportDto into `box`. */
export function drawRetentionPreview(box, report) {
  clear(box);
  box.className = "preview is-ok";
  const items = report.items || [];
  box.append(h("div", { class: "preview-title" }, `Would keep ${report.kept} and remove ${report.removed} of ${items.length} snapshot${items.length === 1 ? "" : "s"}.`));
  if (!items.length) {
    box.append(h("p", { class: "muted" }, "This source has no snapshots yet; the rules apply from its first backup."));
    return;
  }
  const rows = items.map((it) => h("tr", { dataset: { verdict: it.keep ? "keep" : "remove" } },
    td(fmt.dateTime(it.created_at), "time"),
    td(h("span", { class: "mono" }, fmt.shortId(it.id))),
    td(badge(it.keep ? "Keep" : "Remove", it.keep ? "ok" : "danger")),
    td((it.reasons || []).join(", "))));
  box.append(h("div", { class: "verdicts" }, table(["Taken", "Snapshot", "Verdict", "Why"], rows, { label: "Retention preview" })));
}

function sourceForm(ctx, existing, defaults, onSaved) {
  const editing = Boolean(existing);
  const name = input({ id: "source-name", name: "name", required: true, maxlength: "200", value: existing ? existing.name : "", autocomplete: "off" });
  const path = input({ id: "source-path", name: "path", class: "input mono", required: true, maxlength: "4096", value: existing ? existing.path : "", placeholder: "/srv/projects", autocomplete: "off", spellcheck: "false" });
  const schedule = input({ id: "source-schedule", name: "schedule", class: "input mono", maxlength: "200", value: existing && existing.schedule ? existing.schedule : "", placeholder: "0 2 * * *", autocomplete: "off", spellcheck: "false" });
  const schedPreview = h("div", { id: "schedule-preview", class: "preview", "aria-live": "polite" });
  const enabled = checkbox("Run on its schedule (untick to pause)", { id: "source-enabled", checked: existing ? existing.enabled : true });
  const override = checkbox("Give this source its own retention rules", { id: "retention-override", checked: Boolean(existing && existing.retention) });
  const rules = retentionInputs("retention", existing && existing.retention ? existing.retention : defaults);
  const retPreview = h("div", { id: "retention-preview", class: "preview", "aria-live": "polite" });
  const excludes = h("textarea", { id: "source-exclude", name: "exclude", class: "input mono", rows: "4", spellcheck: "false", autocomplete: "off", placeholder: "*.tmp\n/build/\n**/node_modules\n!keep.tmp" });
  excludes.value = existing && existing.exclude ? existing.exclude.join("\n") : "";
  const caches = checkbox("Leave out cache directories (holding a CACHEDIR.TAG)", { id: "source-exclude-caches", checked: Boolean(existing && existing.exclude_caches) });
  const oneFs = checkbox("Stay on this file system (leave out other mounts below it)", { id: "source-one-file-system", checked: Boolean(existing && existing.one_file_system) });
  const largerMb = input({ type: "number", min: "0", step: "any", inputmode: "decimal", id: "source-exclude-larger-than", name: "exclude_larger_than", value: existing && existing.exclude_larger_than ? String(existing.exclude_larger_than / 1048576) : "", placeholder: "no limit" });
  const exclPreview = h("div", { id: "exclude-preview", class: "preview", "aria-live": "polite" });
  const error = errorBox("source-error");
  const save = button(editing ? "Save changes" : "Add source", null, { variant: "primary", id: "source-save", mutating: true, type: "submit" });
  save.setAttribute("form", "source-form");

  const chips = h("div", { class: "chips", role: "group", "aria-label": "Schedule presets" }, PRESETS.map(([label, cron]) => h("button", {
    type: "button", class: "chip", onclick: () => { schedule.value = cron; schedule.dispatchEvent(new Event("input")); schedule.focus(); },
  }, label)));

  // Schedule preview, debounced.
  let schedSeq = 0;
  const previewSchedule = debounce(async () => {
    const cron = schedule.value.trim();
    const mine = ++schedSeq;
    schedule.removeAttribute("aria-invalid");
    clear(schedPreview);
    if (!cron) {
      schedPreview.className = "preview";
      schedPreview.append(h("span", { class: "muted" }, "No schedule: this source is backed up only when someone chooses “Back up now”."));
      return;
    }
    try {
      const p = await get("/api/schedule/preview", { cron });
      if (mine !== schedSeq) return;
      clear(schedPreview);
      schedPreview.className = "preview is-ok";
      schedPreview.append(h("div", { class: "preview-title" }, p.description),
        p.next_runs && p.next_runs.length ? h("ul", null, p.next_runs.map((t) => h("li", null, `${fmt.dateTime(t)} (${fmt.relative(t)})`))) : null);
    } catch (e) {
      if (mine !== schedSeq) return;
      clear(schedPreview);
      if (e.status === 404 && e.code === "not_found" && /no route/.test(e.message)) {
        schedPreview.className = "preview";
        schedPreview.append(h("span", { class: "muted" }, "Preview unavailable on this server."));
        return;
      }
      schedPreview.className = "preview is-error";
      schedule.setAttribute("aria-invalid", "true");
      schedPreview.append(icon("alert"), " ", e.message);
    }
  }, 300);
  schedule.addEventListener("input", previewSchedule);

  // Retention preview (only a source that exists has snapshots to judge).
  let retSeq = 0;
  const previewRetention = debounce(async () => {
    const mine = ++retSeq;
    if (!editing) {
      retPreview.className = "preview";
      clear(retPreview).append(h("span", { class: "muted" }, override.box.checked
        ? `Rules: ${fmt.retention(rules.read())}. A preview of what is kept appears once the source has backups.`
        : `The default rules apply: ${fmt.retention(defaults)}.`));
      return;
    }
    try {
      const report = await post("/api/retention/preview", { source: String(existing.id), retention: override.box.checked ? rules.read() : null });
      if (mine !== retSeq) return;
      drawRetentionPreview(retPreview, report);
    } catch (e) {
      if (mine !== retSeq) return;
      retPreview.className = "preview is-error";
      clear(retPreview).append(icon("alert"), " ", e.message);
    }
  }, 300);
  for (const el of Object.values(rules.inputs)) {
    el.addEventListener("input", () => { override.box.checked = true; previewRetention(); });
  }
  override.box.addEventListener("change", () => {
    if (!override.box.checked) rules.write(defaults);
    previewRetention();
  });

  // What the source leaves out, previewed on its directory as it is now.
  const exclusions = () => {
    const mb = Number.parseFloat(largerMb.value);
    return {
      exclude: excludes.value.split("\n").map((l) => l.replace(/\r$/, "")).filter((l) => l.trim() !== ""),
      exclude_caches: caches.box.checked,
      one_file_system: oneFs.box.checked,
      exclude_larger_than: Number.isFinite(mb) && mb > 0 ? Math.max(1, Math.round(mb * 1048576)) : null,
    };
  };
  let exclSeq = 0;
  const previewExcludes = debounce(async () => {
    const mine = ++exclSeq;
    const dir = path.value.trim();
    const rules = exclusions();
    excludes.removeAttribute("aria-invalid");
    if (!dir.startsWith("/")) {
      exclPreview.className = "preview";
      clear(exclPreview).append(h("span", { class: "muted" }, "Give the directory to see what these rules leave out."));
      return;
    }
    try {
      const p = await post("/api/exclude/preview", { path: dir, ...rules });
      if (mine !== exclSeq) return;
      clear(exclPreview);
      exclPreview.className = "preview is-ok";
      const n = p.skipped;
      exclPreview.append(h("div", { class: "preview-title", dataset: { skipped: String(n) } },
        n === 0 ? "Nothing would be skipped." : `${p.complete ? "" : "At least "}${n} path${n === 1 ? "" : "s"} would be skipped.`));
      if (p.sample && p.sample.length) {
        exclPreview.append(h("ul", { class: "mono" }, p.sample.map((x) => h("li", { dataset: { reason: x.reason } }, `${x.path} (${REASONS[x.reason] || x.reason})`))));
        if (n > p.sample.length) exclPreview.append(h("p", { class: "muted" }, `… and ${n - p.sample.length} more.`));
      }
      if (!p.complete) exclPreview.append(h("p", { class: "muted" }, `Stopped after looking at ${p.examined} entries.`));
    } catch (e) {
      if (mine !== exclSeq) return;
      exclPreview.className = "preview is-error";
      if (e.code === "invalid_exclude") excludes.setAttribute("aria-invalid", "true");
      clear(exclPreview).append(icon("alert"), " ", e.message);
    }
  }, 400);
  for (const el of [excludes, largerMb, path]) {
    el.addEventListener("input", previewExcludes);
    el.addEventListener("change", previewExcludes);
  }
  for (const el of [caches.box, oneFs.box]) el.addEventListener("change", previewExcludes);

  const form = h("form", { id: "source-form", class: "stack", novalidate: true },
    h("div", { class: "form-grid" },
      field("Name", name, "Unique; shown in backups and reports."),
      field("Directory on the server", path, "Absolute path the server can read.")),
    h("div", { class: "field" },
      h("label", { for: "source-schedule" }, "Schedule (cron, UTC)"),
      schedule,
      h("p", { class: "hint", id: "source-schedule-hint" }, "Five fields: minute hour day-of-month month day-of-week. Empty for manual backups only."),
      chips,
      schedPreview),
    enabled.el,
    h("fieldset", { class: "stack" },
      h("legend", null, "What to leave out"),
      field("Exclude patterns (one per line)", excludes, "Gitignore syntax, relative to the directory: *.tmp anywhere, /build at the top only, logs/ directories only, ** across directories, !pattern takes one back."),
      caches.el,
      oneFs.el,
      field("Leave out files larger than (MiB)", largerMb, "Empty or 0: no limit."),
      exclPreview),
    h("fieldset", { class: "stack" },
      h("legend", null, "Retention"),
      override.el,
      h("p", { class: "hint" }, `0 turns a rule off. Without its own rules the defaults apply: ${fmt.retention(defaults)}. Protected snapshots and the newest complete one are always kept.`),
      rules.grid,
      retPreview),
    error);
  schedule.setAttribute("aria-describedby", "source-schedule-hint schedule-preview");

  const cancel = button("Cancel", () => d.close(), { variant: "ghost" });
  const d = openDialog({
    id: "source-dialog", wide: true,
    title: editing ? `Edit source “${existing.name}”` : "Add a source",
    subtitle: editing ? "Changes apply from the next backup." : "A directory on this server to back up.",
    content: form, actions: [cancel, save],
  });
  previewSchedule();
  previewRetention();
  previewExcludes();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.show(null);
    if (!name.value.trim()) { error.show("Give the source a name."); name.focus(); return; }
    if (!path.value.trim()) { error.show("Give the directory to back up."); path.focus(); return; }
    save.disabled = true;
    const cron = schedule.value.trim();
    const retention = override.box.checked ? rules.read() : null;
    try {
      let saved;
      if (!editing) {
        saved = await post("/api/sources", { name: name.value.trim(), path: path.value.trim(), schedule: cron || null, retention, ...exclusions() });
        if (!enabled.box.checked) saved = await patch(`/api/sources/${seg(saved.id)}`, { enabled: false });
      } else {
        const body = { schedule: cron || null, retention, enabled: enabled.box.checked, ...exclusions() };
        if (name.value.trim() !== existing.name) body.name = name.value.trim();
        if (path.value.trim() !== existing.path) body.path = path.value.trim();
        saved = await patch(`/api/sources/${seg(existing.id)}`, body);
      }
      d.close();
      toast(editing ? `Source ${saved.name} saved.` : `Source ${saved.name} added.`, "success");
      onSaved(saved);
    } catch (e) {
      error.show(e);
      save.disabled = false;
    }
  });
}

export async function render(ctx) {
  const main = ctx.main;
  const canManage = ctx.can("manage_system");
  const canBackup = ctx.can("backup");
  let defaults = { max_backups: 0, max_age_days: 0 };
  const panel = jobPanel(ctx, { onDone: (job) => { announce(job); load(); }, canCancel: cancelRule(ctx) });
  let list = [];
  // The source whose runs are shown (its id), and where.
  let runsOf = null;
  const runsTitle = h("h2", { id: "source-runs-title" }, "Runs");
  const runsBody = h("div");
  const runsCard = h("section", { class: "card section-gap", id: "source-runs", "aria-labelledby": "source-runs-title", hidden: true },
    h("div", { class: "card-header" }, runsTitle,
      h("div", { class: "card-actions" }, button("Close", () => { runsOf = null; runsCard.hidden = true; }, { small: true, variant: "ghost", iconOnly: true, icon: "x", dataset: { action: "close-runs" } }))),
    h("div", { class: "card-body" }, runsBody));

  const add = canManage ? button("Add source", () => sourceForm(ctx, null, defaults, () => load(true)), { variant: "primary", icon: "plus", mutating: true, id: "source-add" }) : null;
  main.append(pageHeader("Sources", "Directories on this server that Coffer backs up.", add));
  main.append(panel.el);
  const body = h("div", null, loading());
  main.append(h("section", { class: "card", "aria-label": "Sources" }, body));
  main.append(runsCard);

  async function showRuns(s, focus = false) {
    runsOf = s.id;
    runsTitle.textContent = `Last runs of ${s.name}`;
    runsCard.hidden = false;
    if (!runsBody.firstChild) runsBody.append(loading());
    try {
      const data = await get(`/api/sources/${seg(s.id)}/runs`, null, { signal: ctx.signal });
      if (runsOf !== s.id) return;
      drawSourceRuns(runsBody, data);
      if (focus) runsCard.scrollIntoView({ block: "nearest" });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      toastError(e);
    }
  }

  async function toggle(s) {
    try {
      await patch(`/api/sources/${seg(s.id)}`, { enabled: !s.enabled });
      toast(s.enabled ? `Schedule of ${s.name} paused.` : `Schedule of ${s.name} resumed.`, "success");
      load();
    } catch (e) {
      toastError(e);
    }
  }

  async function remove(s) {
    const ok = await confirmDialog({
      title: `Delete source “${s.name}”?`,
      message: "Coffer stops backing up this directory. Its existing snapshots are kept and stay in Backups until retention or you remove them.",
      confirm: "Delete source", danger: true, id: "delete-dialog",
    });
    if (!ok) return;
    try {
      await del(`/api/sources/${seg(s.id)}`);
      toast(`Source ${s.name} deleted.`, "success");
      load(true);
    } catch (e) {
      toastError(e);
    }
  }

  function describe(cell, cron) {
    get("/api/schedule/preview", { cron }, { signal: ctx.signal })
      .then((p) => { if (p && p.description) cell.append(h("span", { class: "sub" }, p.description)); })
      .catch(() => {});
  }

  function row(s) {
    const actions = [];
    if (canBackup) actions.push(button("Back up now", () => startBackup(s, panel), { small: true, icon: "play", mutating: true, dataset: { action: "backup" } }));
    actions.push(button(`Last runs of ${s.name}`, () => showRuns(s, true), { small: true, variant: "ghost", iconOnly: true, icon: "overview", dataset: { action: "runs" } }));
    if (canManage) {
      actions.push(h("a", { class: "btn btn-sm btn-icon btn-ghost", href: `#/backups?source_id=${s.id}`, title: "Show its backups", "aria-label": `Backups of ${s.name}`, dataset: { action: "backups" } }, icon("backups")));
      actions.push(button("Edit", () => sourceForm(ctx, s, defaults, () => load(true)), { small: true, variant: "ghost", iconOnly: true, icon: "edit", mutating: true, dataset: { action: "edit" } }));
      if (s.schedule) {
        actions.push(button(s.enabled ? "Pause schedule" : "Resume schedule", () => toggle(s), { small: true, variant: "ghost", iconOnly: true, icon: s.enabled ? "pause" : "play", mutating: true, dataset: { action: s.enabled ? "pause" : "resume" } }));
      }
      actions.push(button("Delete", () => remove(s), { small: true, variant: "ghost", iconOnly: true, icon: "delete", class: "btn-danger-ghost", mutating: true, dataset: { action: "delete" } }));
    }
    const schedCell = h("div", null, s.schedule ? h("code", null, s.schedule) : h("span", { class: "muted" }, "Manual"));
    if (s.schedule) describe(schedCell, s.schedule);
    const status = !s.schedule ? badge("Manual", "neutral") : s.enabled ? badge("Scheduled", "ok") : badge("Paused", "warn");
    return h("tr", { dataset: { source: s.name, sourceId: String(s.id) } },
      td(h("strong", null, s.name)),
      td(s.path, "path"),
      td(schedCell),
      td(status),
      td(s.last_run_at ? h("span", { title: fmt.dateTime(s.last_run_at, true) }, fmt.relative(s.last_run_at)) : h("span", { class: "muted" }, "—"), "time"),
      td(s.next_run_at ? h("span", { title: fmt.dateTime(s.next_run_at, true) }, fmt.dateTime(s.next_run_at), h("span", { class: "sub" }, fmt.relative(s.next_run_at))) : h("span", { class: "muted" }, "—"), "time"),
      td(s.retention ? h("span", null, fmt.retention(s.retention)) : h("span", { class: "muted" }, "Default")),
      td(h("div", { class: "actions-inner" }, actions), "actions"));
  }

  async function load(explicit = false) {
    if (explicit) ctx.busy();
    try {
      list = await get("/api/sources", null, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      throw e;
    }
    clear(body);
    if (!list.length) {
      body.append(emptyState("sources", "No sources yet", canManage ? "Add a directory on this server and Coffer backs it up, on a schedule or on demand." : "An administrator adds the directories to back up.",
        canManage ? button("Add your first source", () => add.click(), { variant: "primary", icon: "plus", mutating: true }) : null));
    } else {
      const cols = ["Name", "Directory", "Schedule", "Status", "Last run", "Next run", "Retention", ["Actions", "actions"]];
      body.append(table(cols, list.map(row), { label: "Sources" }));
    }
    // The runs shown follow the list: drawn again (a backup ended), or closed (deleted).
    const shown = list.find((s) => s.id === runsOf);
    if (shown) await showRuns(shown);
    else {
      runsOf = null;
      runsCard.hidden = true;
    }
    ctx.ready();
  }

  // Retention defaults, to prefill the rules of a source without its own.
  get("/api/dashboard", null, { signal: ctx.signal })
    .then((d) => { defaults = d.retention.defaults || defaults; })
    .catch(() => {});
  get("/api/jobs", { state: "running", kind: "backup", limit: 20 }, { signal: ctx.signal })
    .then((p) => { for (const j of p.items || []) panel.track(j); })
    .catch(() => {});

  await load(true);
}
