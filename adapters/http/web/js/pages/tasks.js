// Tasks: every job (backup, restore, verify, prune, check, copy, import) with filters
// (kind, state, source, user, period) and paging; each links to its page and log.

import { get } from "../api.js";
import { h, clear, icon, badge, button, pageHeader, emptyState, loading, table, td, input, select, errorBox, pager } from "../dom.js";
import { jobTitle, FINAL, STATE_TONE } from "../jobs.js";
import * as fmt from "../format.js";

const PAGE_SIZE = 25;
const KINDS = ["backup", "restore", "verify", "prune", "check", "copy", "import"];
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

/** How long a job ran (or has been running), as text. */
export function jobDuration(job, now = Date.now()) {
  if (!job.started_at) return "—";
  const end = job.finished_at ? new Date(job.finished_at).getTime() : now;
  const text = fmt.duration(end - new Date(job.started_at).getTime());
  return job.finished_at ? text : `${text} so far`;
}

/** What a job came to, in a few words. */
export function outcome(job) {
  const r = job.result || {};
  if (job.state === "failed") return job.error ? `${job.error.message} (${job.error.code})` : "Failed";
  if (job.state === "cancelled") return "Cancelled";
  if (job.state === "queued") return "Waiting";
  if (job.state === "running") return "Running";
  switch (job.kind) {
    case "backup": return `${r.status === "partial" ? "Partial" : "OK"}: ${fmt.number(r.files)} files, ${fmt.bytes(r.bytes_added)} new`;
    case "restore": return `${fmt.number(r.files)} files, ${fmt.bytes(r.bytes)}`;
    case "verify": return r.ok === false ? "Damaged" : "Intact";
    case "check": return r.ok === false ? "Damage found" : "No damage";
    case "prune": return `${fmt.bytes(r.bytes_before)} → ${fmt.bytes(r.bytes_after)}`;
    case "copy": return `${fmt.number(r.objects_copied)} objects copied`;
    case "import": return `${fmt.number(r.imported)} backups${r.dry_run ? " (dry run)" : ""}`;
    default: return "Succeeded";
  }
}

export async function render(ctx) {
  const main = ctx.main;
  const q = ctx.route.query;
  main.append(pageHeader("Tasks", "Every job the server ran or runs, with its outcome and its log.",
    button("Refresh", () => load(true), { variant: "ghost", icon: "refresh", dataset: { action: "refresh" } })));

  const fKind = select([["", "Any kind"], ...KINDS.map((k) => [k, k])], { id: "tasks-kind" });
  const fState = select([["", "Any state"], ...STATES.map((s) => [s, s])], { id: "tasks-state" });
  const fSource = select([["", "Any source"]], { id: "tasks-source" });
  const fUser = input({ id: "tasks-user", placeholder: "any user", autocomplete: "off" });
  const fFrom = input({ type: "date", id: "tasks-from" });
  const fTo = input({ type: "date", id: "tasks-to" });
  fKind.value = q.get("kind") || "";
  fState.value = q.get("state") || "";
  fUser.value = q.get("user") || "";
  const periodError = errorBox("tasks-error");
  const errorWrap = h("div", { class: "card-body", hidden: true }, periodError);
  const say = (e) => { periodError.show(e); errorWrap.hidden = !e; };
  const invalid = () => (fFrom.value && fTo.value && fFrom.value > fTo.value
    ? "“From” is after “To”: choose a start on or before the end of the period."
    : null);

  // Sources for the filter: those the user may see (a failure leaves "Any source").
  get("/api/sources", null, { signal: ctx.signal }).then((sources) => {
    const items = Array.isArray(sources) ? sources : (sources.items || []);
    for (const s of items) fSource.append(h("option", { value: String(s.id) }, s.name));
    if (q.get("source_id")) fSource.value = q.get("source_id");
  }).catch(() => {});

  let offset = 0;
  const apply = () => { offset = 0; load(true); };
  for (const c of [fKind, fState, fSource, fFrom, fTo, fUser]) c.addEventListener("change", apply);
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the tasks", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
    f("Kind", fKind), f("State", fState), f("Source", fSource), f("User", fUser), f("From", fFrom), f("To", fTo),
    h("div", { class: "filter-actions" },
      button("Apply", null, { type: "submit", small: true }),
      button("Reset", () => { for (const c of [fKind, fState, fSource, fUser, fFrom, fTo]) c.value = ""; apply(); }, { variant: "ghost", small: true, dataset: { action: "reset" } })));
  const body = h("div", null, loading());
  main.append(h("section", { class: "card", "aria-label": "Tasks" }, form, errorWrap, body));

  const filters = () => ({
    kind: fKind.value,
    state: fState.value,
    source_id: fSource.value,
    user: fUser.value.trim(),
    from: fmt.dayStart(fFrom.value),
    to: fmt.dayEnd(fTo.value),
  });

  function row(job) {
    return h("tr", { dataset: { taskId: job.id, jobState: job.state, jobKind: job.kind } },
      td(h("a", { href: `#/tasks/${encodeURIComponent(job.id)}`, dataset: { action: "open" } }, jobTitle(job))),
      td(badge(job.state, STATE_TONE[job.state] || "neutral")),
      td(fmt.dateTime(job.created_at, true), "time nowrap", { title: job.created_at }),
      td(jobDuration(job), "nowrap"),
      td(job.requested_by, "nowrap"),
      td(h("span", { class: "clip" }, outcome(job)), job.state === "failed" ? "text-danger" : null, { title: outcome(job) }));
  }

  let timer = null;
  async function load(explicit = false) {
    if (timer) { ctx.clearTimeout(timer); timer = null; }
    if (explicit) ctx.busy();
    const problem = invalid();
    say(problem);
    if (problem) {
      clear(body).append(emptyState("calendar", "No period to show", "Fix the dates above."));
      ctx.ready();
      return;
    }
    let page;
    try {
      page = await get("/api/jobs", { ...filters(), limit: PAGE_SIZE, offset }, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      clear(body).append(h("div", { class: "card-body" }, h("div", { class: "form-error", role: "alert" }, icon("alert"), h("span", null, e.message))));
      ctx.ready();
      return;
    }
    clear(body);
    if (!page.items.length) {
      body.append(emptyState("clock", "No tasks match", "Change or reset the filters."));
    } else {
      body.append(table(["Task", "State", "Created", "Duration", "Requested by", "Outcome"], page.items.map(row), { label: "Tasks", caption: `Tasks ${offset + 1} to ${offset + page.items.length} of ${page.total}` }));
      body.append(pager({ offset, limit: PAGE_SIZE, total: page.total, count: page.items.length, onPage: (o) => { offset = o; load(true); } }));
    }
    ctx.ready();
    // While a listed job is not final, the list follows it.
    if (page.items.some((j) => !FINAL.has(j.state))) timer = ctx.timeout(() => load(false), 3000);
  }

  return load(true);
}

function f(label, control) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}
