// Reports: backup history (CSV), audit log (CSV) and the PDF report for a period and,
// optionally, one source. Plain download links: GET with the session cookie.

import { get, query } from "../api.js";
import { h, icon, pageHeader, card, field, input, select } from "../dom.js";
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
  const source = select([["", "All sources"], ...sources.map((s) => [s.name, s.name])], { id: "report-source" });
  const summary = h("p", { class: "muted", id: "report-summary" });

  const links = {
    csv: h("a", { class: "btn btn-primary", id: "export-csv", download: "" }, icon("download"), h("span", null, "Download CSV")),
    audit: h("a", { class: "btn btn-primary", id: "export-audit-csv", download: "" }, icon("download"), h("span", null, "Download CSV")),
    pdf: h("a", { class: "btn btn-primary", id: "export-pdf", download: "" }, icon("download"), h("span", null, "Download PDF")),
  };

  const update = () => {
    const range = presetRange(preset.value);
    if (range) {
      from.value = fmt.dateInput(range[0]);
      to.value = fmt.dateInput(range[1]);
    }
    const q = { from: fmt.dayStart(from.value), to: fmt.dayEnd(to.value) };
    const withSource = { ...q, source: source.value };
    links.csv.href = `/api/export/csv${query(withSource)}`;
    links.pdf.href = `/api/export/pdf${query(withSource)}`;
    links.audit.href = `/api/export/audit.csv${query(q)}`;
    summary.textContent = `${from.value || "the beginning"} to ${to.value || "today"} (inclusive), ${source.value ? `source “${source.value}”` : "every source"}. Times in the files are UTC.`;
  };
  preset.addEventListener("change", update);
  for (const c of [from, to]) c.addEventListener("change", () => { preset.value = "custom"; update(); });
  source.addEventListener("change", update);
  update();

  main.append(card("Period and source", h("div", { class: "stack" },
    h("div", { class: "form-grid-4" }, field("Period", preset), field("From", from), field("To", to), field("Source", source)),
    summary)));

  const exportCard = (iconName, title, text, link) => h("section", { class: "card" }, h("div", { class: "card-body export-card" },
    h("div", { class: "icon-lg" }, icon(iconName)), h("h2", null, title), h("p", null, text), link));
  const grid = h("div", { class: "grid-3 section-gap" },
    exportCard("backups", "Backup history", "One row per snapshot: source, status, checksum, encryption, duration, files and bytes added (RFC 4180 CSV).", links.csv),
    exportCard("audit", "Audit log", "Every recorded action in the period, with user, result and address (CSV). The source filter does not apply.", links.audit),
    exportCard("reports", "PDF report", "Summary figures, storage and backup charts, the full backup history and an audit summary — ready to file.", links.pdf));
  main.append(grid);
  ctx.ready();
}
