// Audit log: filters (user, action, result, time), paging by cursor, CSV export.

import { get, query } from "../api.js";
import { h, clear, icon, badge, button, pageHeader, emptyState, loading, table, td, input, select, errorBox, exportLink, toast } from "../dom.js";
import * as fmt from "../format.js";

const PAGE_SIZE = 50;

const ACTIONS = ["alert_ack", "backup_browse", "backup_create", "backup_delete", "backup_download", "backup_protect", "backup_unprotect", "catalog_rebuild", "check", "export", "job_cancel", "job_queue", "key_export", "key_rotate", "login", "login_failed", "login_throttled", "logout", "password_change", "prune", "restore", "settings_change", "source_create", "source_delete", "source_update", "storage_recount", "user_create", "user_password_reset", "user_update", "verify"];

export function render(ctx) {
  const main = ctx.main;
  const fUser = input({ id: "audit-user", placeholder: "any user", autocomplete: "off" });
  const fAction = input({ id: "audit-action", placeholder: "any action", autocomplete: "off", list: "audit-actions" });
  const actionsList = h("datalist", { id: "audit-actions" }, ACTIONS.map((a) => h("option", { value: a })));
  const fResult = select([["", "Any result"], ["true", "Succeeded"], ["false", "Failed"]], { id: "audit-result" });
  const fFrom = input({ type: "date", id: "audit-from" });
  const fTo = input({ type: "date", id: "audit-to" });
  const periodError = errorBox("audit-error");
  const errorWrap = h("div", { class: "card-body", hidden: true }, periodError);
  const say = (e) => { periodError.show(e); errorWrap.hidden = !e; };
  /** The filters' problem, or null. */
  const invalid = () => (fFrom.value && fTo.value && fFrom.value > fTo.value
    ? "“From” is after “To”: choose a start on or before the end of the period."
    : null);
  // The CSV export takes the list's filters under the list's names (`success` too).
  const exporter = exportLink({
    id: "audit-export", label: "Export CSV", cls: "btn", fallbackName: "coffer-audit.csv",
    request: () => ["/api/export/audit.csv", filters()],
    validate: invalid,
    onStart: () => say(null),
    onError: (e) => { say(e); if (typeof e !== "string") toast(e.message || String(e), "error"); },
  });
  exporter.href = "/api/export/audit.csv";
  main.append(pageHeader("Audit log", "Every sign-in, change, backup, restore and download, chained by SHA-256 so tampering shows.", ctx.can("export") ? exporter : null));

  const filters = () => ({
    username: fUser.value.trim(),
    action: fAction.value.trim(),
    success: fResult.value,
    from: fmt.dayStart(fFrom.value),
    to: fmt.dayEnd(fTo.value),
  });
  const cursors = [null];
  let pageIndex = 0;

  const apply = () => {
    cursors.length = 1;
    pageIndex = 0;
    exporter.href = `/api/export/audit.csv${query(filters())}`;
    load(true);
  };
  for (const c of [fResult, fFrom, fTo]) c.addEventListener("change", apply);
  for (const c of [fUser, fAction]) c.addEventListener("change", apply);
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the audit log", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
    f("User", fUser), f("Action", fAction), actionsList, f("Result", fResult), f("From", fFrom), f("To", fTo),
    h("div", { class: "filter-actions" },
      button("Apply", null, { type: "submit", small: true }),
      button("Reset", () => { fUser.value = ""; fAction.value = ""; fResult.value = ""; fFrom.value = ""; fTo.value = ""; apply(); }, { variant: "ghost", small: true, dataset: { action: "reset" } })));
  const body = h("div", null, loading());
  main.append(h("section", { class: "card", "aria-label": "Audit log" }, form, errorWrap, body));

  function row(r) {
    return h("tr", { dataset: { auditId: String(r.id) } },
      td(fmt.dateTime(r.timestamp, true), "time", { title: r.timestamp }),
      td(h("strong", null, r.username)),
      td(h("code", null, r.action)),
      td(resource(r.resource), "id", { title: r.resource || undefined }),
      td(r.success ? badge("OK", "ok") : badge("Failed", "danger")),
      td(r.ip_address || "—", "nowrap mono"),
      td(h("span", { class: "clip" }, r.detail || ""), null, { title: [r.detail, r.user_agent].filter(Boolean).join("\n") || undefined }));
  }

  async function load(explicit = false) {
    if (explicit) ctx.busy();
    const problem = invalid();
    say(problem);
    if (problem) {
      // Nothing is asked of the server for an impossible period.
      clear(body).append(emptyState("calendar", "No period to show", "Fix the dates above."));
      ctx.ready();
      return;
    }
    let page;
    try {
      page = await get("/api/audit", { ...filters(), before: cursors[pageIndex], limit: PAGE_SIZE }, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      clear(body).append(h("div", { class: "card-body" }, h("div", { class: "form-error", role: "alert" }, icon("alert"), h("span", null, e.message))));
      ctx.ready();
      return;
    }
    clear(body);
    if (!page.items.length) {
      body.append(emptyState("audit", "No audit rows match", "Change or reset the filters."));
    } else {
      body.append(table(["Time", "User", "Action", "Resource", "Result", "Address", "Detail"], page.items.map(row), { label: "Audit log" }));
      const newer = button("Newer", () => { pageIndex -= 1; load(true); }, { small: true, variant: "ghost", disabled: pageIndex === 0 });
      const older = button("Older", () => { cursors[pageIndex + 1] = page.next_before; pageIndex += 1; load(true); }, { small: true, variant: "ghost", disabled: page.next_before === undefined || page.next_before === null });
      newer.dataset.pager = "prev";
      older.dataset.pager = "next";
      body.append(h("div", { class: "pager" }, h("span", { class: "muted" }, `Page ${pageIndex + 1} · ${page.items.length} rows`), h("div", { class: "pager-buttons" }, newer, older)));
    }
    ctx.ready();
  }

  return load(true);
}

/** `snapshot:1d511dd0c4f8…`: long ids shortened (the full value is the cell's title). */
function resource(value) {
  if (!value) return "—";
  const i = value.indexOf(":");
  const id = i >= 0 ? value.slice(i + 1) : value;
  return id.length > 16 ? `${value.slice(0, i + 1)}${id.slice(0, 12)}…` : value;
}

function f(label, control) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}
