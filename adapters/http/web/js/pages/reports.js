// Reports: backup history (CSV), audit log (CSV) and the PDF report for a period and,
// optionally, one source. Each export is fetched with the session cookie and saved only
// when the server answered with the file; an error is shown on the page instead.

import { get, query } from "../api.js";
import { h, icon, pageHeader, card, field, input, select, errorBox, exportLink, toast } from "../dom.js";
import * as fmt from "../format.js";

function presetRange(name, now = new Date()) {
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const daysAgo = (n) => { const d = new Date(today); d.setDate(d.getDate() - n); return d; };
  switch (name) {
    case "7d": return [daysAgo(6), today];
    case "30d": return [daysAgo(29), today];
    case "90d": return [daysAgo(89), today];
    case "month": return [new Date(today.getFullYear(), today.getMonth(), 1), today];
    case "last-month": return [new Date(today.getFullYear(), today.getMonth() - 1, 1), new Date(today.getFullYear(), today.getMonth(), 0)];
    case "year": return [new Date(today.getFullYear(), 0, 1), today];
    default: return null;
  }
}

/** The day `n` days before the `YYYY-MM-DD` value `day` (local time), same format. */
function daysBefore(day, n) {
  const d = new Date(`${day}T00:00:00`);
  d.setDate(d.getDate() - n);
  return fmt.dateInput(d);
}

/** The PDF's default period when From is empty: the 30 days up to To (the server's own
 * default), sent explicitly so the page and the file agree. */
const PDF_DEFAULT_DAYS = 30;

export async function render(ctx) {
  const main = ctx.main;
  main.append(pageHeader("Reports", "Download the backup history, the audit log or a PDF summary for a period."));
  let sources = [];
  try {
    sources = await get("/api/sources", null, { signal: ctx.signal });
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  const preset = select([["7d", "Last 7 days"], ["30d", "Last 30 days"], ["90d", "Last 90 days"], ["month", "This month"], ["last-month", "Last month"], ["year", "This year"], ["custom", "Custom…"]], { id: "report-period", value: "30d" });
  const from = input({ type: "date", id: "report-from" });
  const to = input({ type: "date", id: "report-to" });
  // By id: a source named "3" must not be taken for the source with id 3.
  const source = select([["", "All sources"], ...sources.map((s) => [String(s.id), s.name])], { id: "report-source" });
  const summary = h("p", { class: "muted", id: "report-summary" });
  const error = errorBox("report-error");

  /** The period's problem, or null. */
  const invalid = () => (from.value && to.value && from.value > to.value
    ? "“From” is after “To”: choose a start on or before the end of the period."
    : null);
  const sourceName = () => (sources.find((s) => String(s.id) === source.value) || {}).name;
  const today = () => fmt.dateInput(new Date());
  const pdfFrom = () => from.value || daysBefore(to.value || today(), PDF_DEFAULT_DAYS - 1);
  const requests = {
    csv: () => ["/api/export/csv", { from: fmt.dayStart(from.value), to: fmt.dayEnd(to.value), source: source.value }],
    audit: () => ["/api/export/audit.csv", { from: fmt.dayStart(from.value), to: fmt.dayEnd(to.value) }],
    pdf: () => ["/api/export/pdf", { from: fmt.dayStart(pdfFrom()), to: fmt.dayEnd(to.value), source: source.value }],
  };
  const showError = (e) => { error.show(e); if (e && typeof e !== "string") toast(e.message || String(e), "error"); };
  const link = (id, label, req, name) => exportLink({
    id, label, request: req, fallbackName: name, validate: invalid, onError: showError, onStart: () => error.show(null),
  });
  const links = {
    csv: link("export-csv", "Download CSV", requests.csv, "coffer-backups.csv"),
    audit: link("export-audit-csv", "Download CSV", requests.audit, "coffer-audit.csv"),
    pdf: link("export-pdf", "Download PDF", requests.pdf, "coffer-report.pdf"),
  };
  const periods = { csv: h("p", { class: "period", dataset: { period: "csv" } }), audit: h("p", { class: "period", dataset: { period: "audit" } }), pdf: h("p", { class: "period", dataset: { period: "pdf" } }) };

  const update = () => {
    const range = presetRange(preset.value);
    if (range) {
      from.value = fmt.dateInput(range[0]);
      to.value = fmt.dateInput(range[1]);
    }
    const problem = invalid();
    error.show(problem);
    for (const [key, a] of Object.entries(links)) {
      const [path, params] = requests[key]();
      a.href = `${path}${query(params)}`;
      if (problem) a.setAttribute("aria-disabled", "true");
      else a.removeAttribute("aria-disabled");
    }
    const end = to.value || `today (${today()})`;
    const who = source.value ? `source “${sourceName() || source.value}”` : "every source";
    summary.textContent = problem
      ? "Fix the period to download."
      : from.value
        ? `${from.value} to ${end} (inclusive), ${who}. Times in the files are UTC.`
        : `No start date: the CSV files cover everything up to ${end}; the PDF covers the ${PDF_DEFAULT_DAYS} days up to it. ${who[0].toUpperCase()}${who.slice(1)}. Times in the files are UTC.`;
    periods.csv.textContent = problem ? "" : `${from.value || "All time"} – ${end}`;
    periods.audit.textContent = periods.csv.textContent;
    periods.pdf.textContent = problem ? "" : `${pdfFrom()} – ${end}`;
  };
  preset.addEventListener("change", update);
  for (const c of [from, to]) c.addEventListener("change", () => { preset.value = "custom"; update(); });
  source.addEventListener("change", update);
  update();

  main.append(card("Period and source", h("div", { class: "stack" },
    h("div", { class: "form-grid-4" }, field("Period", preset), field("From", from), field("To", to), field("Source", source)),
    summary, error)));

  const exportCard = (iconName, title, text, key) => h("section", { class: "card" }, h("div", { class: "card-body export-card" },
    h("div", { class: "icon-lg" }, icon(iconName)), h("h2", null, title), h("p", null, text), periods[key], links[key]));
  const grid = h("div", { class: "grid-3 section-gap" },
    exportCard("backups", "Backup history", "One row per snapshot: source, status, checksum, encryption, duration, files and bytes added (RFC 4180 CSV).", "csv"),
    exportCard("audit", "Audit log", "Every recorded action in the period, with user, result and address (CSV). The source filter does not apply.", "audit"),
    exportCard("reports", "PDF report", `Summary figures, storage and backup charts, the full backup history and an audit summary — ready to file. Without a start date: the ${PDF_DEFAULT_DAYS} days up to the end.`, "pdf"));
  main.append(grid);
  ctx.ready();
}
