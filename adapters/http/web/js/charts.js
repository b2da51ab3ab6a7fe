// Charts drawn in the page as SVG (createElementNS, attributes only: the CSP forbids style
// attributes). Each chart is a <figure> with a stable id, an <svg role="img"> whose
// aria-label says what it shows, a sentence under it, and a <details> holding the numbers
// as a real table. Outcomes are told apart by pattern (solid, hatched, cross-hatched,
// dotted) and by the legend's words, not by colour alone.
//
// The SVG's viewBox is as wide as its box when drawn, so text keeps its size on a phone;
// CSS gives it width 100%, so a later resize scales it rather than overflowing.

import { h } from "./dom.js";
import * as fmt from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const HEIGHT = 200;
const PAD = { top: 14, right: 12, bottom: 26, left: 64 };
const DAY_MS = 86400000;

/** The outcomes of a backup run, bottom of a stack first (fills: solid, hatched,
 * cross-hatched, dotted; see `patterns`). */
export const OUTCOMES = [
  ["succeeded", "Succeeded"],
  ["warnings", "With warnings"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
];
const LABEL = Object.fromEntries(OUTCOMES.map(([k, l]) => [k, l]));

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The fill patterns of the outcomes, ids `<prefix>-<outcome>`. */
function patterns(prefix) {
  const p = (key, ...marks) => s("pattern", { id: `${prefix}-${key}`, width: 6, height: 6, patternUnits: "userSpaceOnUse" },
    s("rect", { width: 6, height: 6, class: `pat-bg pat-${key}` }), marks);
  return s("defs", null,
    p("succeeded"),
    p("warnings", s("path", { d: "M-1 7 L7 -1 M-1 1 L1 -1 M5 7 L7 5", class: "pat-mark pat-warnings" })),
    p("failed", s("path", { d: "M0 0 L6 6 M6 0 L0 6", class: "pat-mark pat-failed" })),
    p("cancelled", s("circle", { cx: 3, cy: 3, r: 1.3, class: "pat-dot pat-cancelled" })));
}

/** A legend: a swatch with the outcome's pattern and its name, for each outcome. */
function legend(prefix, keys) {
  return h("ul", { class: "chart-legend" }, OUTCOMES.filter(([k]) => keys.includes(k)).map(([key, label]) =>
    h("li", null,
      s("svg", { class: "chart-swatch", viewBox: "0 0 14 14", "aria-hidden": "true", focusable: "false" },
        s("rect", { x: 0.5, y: 0.5, width: 13, height: 13, fill: `url(#${prefix}-${key})`, class: "swatch-edge" })),
      label)));
}

/** The width to draw at: the host's, within bounds. */
function widthOf(host) {
  return Math.max(280, Math.min(1200, Math.round(host.clientWidth || 640)));
}

function frame(width, label) {
  return s("svg", { viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-label": label, class: "chart-svg", preserveAspectRatio: "xMidYMid meet" });
}

/** Round `v` up to a "nice" axis maximum (1, 2, 2.5 or 5 times a power of ten). */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** The same for bytes: nice in the binary unit the axis will show (KiB, MiB, ...). */
function niceBytes(v) {
  if (!(v > 0)) return 1;
  const unit = 1024 ** Math.max(0, Math.floor(Math.log(v) / Math.log(1024)));
  return niceMax(v / unit) * unit;
}

/** Horizontal grid lines and their labels at 0, half and the top. */
function yAxis(svg, width, max, label) {
  const inner = HEIGHT - PAD.top - PAD.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + inner * (1 - f);
    svg.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: y, y2: y, class: "chart-grid" }),
      s("text", { x: PAD.left - 6, y: y + 4, class: "chart-tick", "text-anchor": "end" }, label(max * f)));
  }
}

function dataTable(caption, columns, rows) {
  return h("details", { class: "chart-data" },
    h("summary", null, "Show the numbers"),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
      h("table", { class: "table compact" },
        h("caption", { class: "sr-only" }, caption),
        h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", null, rows))));
}

const dayMs = (day) => Date.parse(`${day}T00:00:00Z`);
const dayOf = (ms) => new Date(ms).toISOString().slice(0, 10);
const shortDay = (day) => day.slice(5);

/** How fast storage grows, in words. */
function rate(trend) {
  if (!trend) return "";
  if (Math.abs(trend.bytes_per_day) < 1) return "flat";
  const sign = trend.bytes_per_day < 0 ? "−" : "+";
  return `${sign}${fmt.bytes(Math.abs(trend.bytes_per_day))} a day`;
}

const WHY = { flat: "storage is flat", shrinking: "storage shrinks", too_slow: "growing too slowly" };

/** One projection as a clause: `[reaches, is reached, does not reach]` say it. */
function projectionClause(p, [on, already, not]) {
  if (!p) return null;
  switch (p.state) {
    case "on": return `${on} on ${p.date}`;
    case "reached": return already;
    case "not_within_a_year": return `${not} within a year (${WHY[p.reason] || p.reason})`;
    default: return null;
  }
}

/** The projection, stated with its method. */
export function projectionSentence(st) {
  if (!st.trend) return "Not enough history for a projection yet: the linear fit needs samples from two of the last 30 days.";
  const parts = [
    st.quota_projection
      ? projectionClause(st.quota_projection, ["storage reaches the quota", "storage is at or above the quota already", "storage does not reach the quota"])
      : "no quota is set",
    projectionClause(st.disk_projection, ["the disk fills", "the disk is full already", "the disk does not fill"]),
  ].filter(Boolean);
  return `At the last ${st.trend.days} days' rate (linear fit, ${rate(st.trend)}), ${parts.join("; ")}.`;
}

/**
 * The bytes in storage over time, with the quota as a dashed line and the projection
 * as a dotted one. Draws into `host` (in the document, so that its width is known).
 */
export function drawStorage(host, st) {
  const width = widthOf(host);
  const days = st.days || [];
  const fig = h("figure", {
    class: "chart", id: "chart-storage",
    dataset: { points: String(days.length), projection: st.quota_projection ? st.quota_projection.state : "none", quotaDate: st.quota_projection?.date || "" },
  });
  host.replaceChildren(fig);
  if (!days.length) {
    fig.append(frame(width, "Stored bytes over time: no samples yet."), h("figcaption", null, "Nothing has been stored yet."));
    return fig;
  }
  const first = dayMs(days[0].day);
  const last = dayMs(days[days.length - 1].day);
  // The projection is drawn 30 days ahead (or 2 weeks for a short history).
  const ahead = st.trend ? Math.min(30, Math.max(7, Math.round((last - first) / DAY_MS))) : 0;
  const end = last + ahead * DAY_MS;
  const projected = st.trend ? Math.max(0, st.stored_bytes + st.trend.bytes_per_day * ahead) : 0;
  const dataMax = Math.max(...days.map((d) => d.stored_bytes), st.stored_bytes, projected);
  // The quota widens the scale only while the data would still be readable beside it.
  const quotaShown = st.quota_bytes && st.quota_bytes <= dataMax * 4 ? st.quota_bytes : null;
  const max = niceBytes(Math.max(dataMax, quotaShown || 0) * 1.05);
  const innerW = width - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const span = Math.max(DAY_MS, end - first);
  const x = (ms) => PAD.left + (innerW * (ms - first)) / span;
  const y = (v) => PAD.top + innerH * (1 - v / max);

  const quotaText = st.quota_bytes ? `quota ${fmt.bytes(st.quota_bytes)}` : "no quota";
  const label = `Stored bytes per day from ${days[0].day} to ${days[days.length - 1].day}: now ${fmt.bytes(st.stored_bytes)}, ${quotaText}. ${projectionSentence(st)}`;
  const svg = frame(width, label);
  yAxis(svg, width, max, (v) => fmt.bytes(v));
  const pts = days.map((d) => [x(dayMs(d.day)), y(d.stored_bytes)]);
  const line = pts.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)} ${py.toFixed(1)}`).join(" ");
  if (pts.length > 1) {
    svg.append(s("path", { d: `${line} L${pts[pts.length - 1][0].toFixed(1)} ${y(0)} L${pts[0][0].toFixed(1)} ${y(0)} Z`, class: "chart-area" }));
  }
  svg.append(s("path", { d: line, class: "chart-line" }));
  if (pts.length === 1) svg.append(s("circle", { cx: pts[0][0], cy: pts[0][1], r: 3, class: "chart-point" }));
  if (st.trend) {
    svg.append(s("line", { x1: x(last), y1: y(st.stored_bytes), x2: x(end), y2: y(projected), class: "chart-projection" }));
  }
  if (quotaShown) {
    svg.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: y(quotaShown), y2: y(quotaShown), class: "chart-quota" }),
      s("text", { x: width - PAD.right - 2, y: y(quotaShown) - 4, "text-anchor": "end", class: "chart-note" }, `Quota ${fmt.bytes(quotaShown)}`));
  } else if (st.quota_bytes) {
    svg.append(s("text", { x: width - PAD.right - 2, y: PAD.top + 10, "text-anchor": "end", class: "chart-note" }, `Quota ${fmt.bytes(st.quota_bytes)} (above the chart)`));
  }
  if (last > first) svg.append(s("text", { x: PAD.left, y: HEIGHT - 8, class: "chart-tick" }, shortDay(days[0].day)));
  svg.append(s("text", { x: x(last), y: HEIGHT - 8, class: "chart-tick", "text-anchor": ahead ? "middle" : last > first ? "end" : "start" }, "today"));
  // The projection's last day, where there is room for it beside "today".
  if (ahead && width - PAD.right - x(last) >= 70) {
    svg.append(s("text", { x: width - PAD.right, y: HEIGHT - 8, class: "chart-tick", "text-anchor": "end" }, shortDay(dayOf(end))));
  }

  const key = h("ul", { class: "chart-legend" },
    h("li", null, h("span", { class: "key key-line", "aria-hidden": "true" }), "Stored"),
    quotaShown ? h("li", null, h("span", { class: "key key-dashed", "aria-hidden": "true" }), "Quota (dashed)") : null,
    st.trend ? h("li", null, h("span", { class: "key key-dotted", "aria-hidden": "true" }), "Projection (dotted)") : null);
  const rows = days.slice().reverse().map((d) => h("tr", { dataset: { day: d.day } }, h("td", null, d.day), h("td", { class: "num" }, fmt.bytes(d.stored_bytes)), h("td", { class: "num" }, fmt.number(d.stored_bytes))));
  fig.append(svg, key,
    h("figcaption", { class: "chart-caption", id: "storage-projection" }, projectionSentence(st)),
    dataTable("Stored bytes per day", ["Day (UTC)", "Stored", "Bytes"], rows));
  return fig;
}

/** Backups per day for the last 30 days, stacked by outcome. */
export function drawBackupsPerDay(host, days) {
  const width = widthOf(host);
  const prefix = "bpd";
  const today = days.length ? days[days.length - 1] : null;
  const total = days.reduce((n, d) => n + d.total, 0);
  const fig = h("figure", {
    class: "chart", id: "chart-backups-per-day",
    dataset: { points: String(days.length), total: String(total), todayTotal: String(today ? today.total : 0), today: today ? today.day : "" },
  });
  host.replaceChildren(fig);
  const sums = Object.fromEntries(OUTCOMES.map(([k]) => [k, days.reduce((n, d) => n + d[k], 0)]));
  const words = OUTCOMES.filter(([k]) => sums[k]).map(([k, l]) => `${fmt.number(sums[k])} ${l.toLowerCase()}`).join(", ");
  const label = days.length
    ? `Backups per day from ${days[0].day} to ${today.day}, by outcome: ${fmt.number(total)} in all${words ? ` (${words})` : ""}; today ${fmt.number(today.total)}.`
    : "Backups per day: no data.";
  const svg = frame(width, label);
  svg.append(patterns(prefix));
  const max = niceMax(Math.max(1, ...days.map((d) => d.total)));
  yAxis(svg, width, max, (v) => (Number.isInteger(v) ? String(v) : ""));
  const innerW = width - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const slot = innerW / Math.max(1, days.length);
  const barW = Math.max(2, Math.min(40, slot * 0.72));
  days.forEach((d, i) => {
    let base = 0;
    const bx = PAD.left + slot * i + (slot - barW) / 2;
    for (const [key, name] of OUTCOMES) {
      const n = d[key];
      if (!n) continue;
      const hgt = (innerH * n) / max;
      const top = PAD.top + innerH * (1 - (base + n) / max);
      svg.append(s("rect", { x: bx.toFixed(1), y: top.toFixed(1), width: barW.toFixed(1), height: Math.max(1, hgt).toFixed(1), fill: `url(#${prefix}-${key})`, class: `bar-seg seg-${key}` },
        s("title", null, `${d.day}: ${n} ${name.toLowerCase()}`)));
      base += n;
    }
  });
  if (days.length) {
    svg.append(
      s("text", { x: PAD.left, y: HEIGHT - 8, class: "chart-tick" }, shortDay(days[0].day)),
      s("text", { x: width - PAD.right, y: HEIGHT - 8, class: "chart-tick", "text-anchor": "end" }, "today"));
  }
  const rows = days.slice().reverse().map((d) => h("tr", { dataset: { day: d.day } },
    h("td", null, d.day), OUTCOMES.map(([k]) => h("td", { class: "num" }, String(d[k]))), h("td", { class: "num" }, String(d.total))));
  fig.append(svg, legend(prefix, OUTCOMES.map(([k]) => k)),
    h("figcaption", { class: "chart-caption" }, days.length ? `${fmt.number(total)} backup run(s) in the last ${days.length} days (UTC), ${fmt.number(today.total)} today.` : "No data."),
    dataTable("Backups per day by outcome", ["Day (UTC)", ...OUTCOMES.map(([, l]) => l), "Total"], rows));
  return fig;
}

/** A bar per run of `values` (null: no bar), filled by the run's outcome. */
function runBars(width, runs, values, title, label, tick, prefix, bytes = false) {
  const svg = frame(width, label);
  svg.append(patterns(prefix));
  const max = (bytes ? niceBytes : niceMax)(Math.max(1, ...values.map((v) => v || 0)));
  yAxis(svg, width, max, tick);
  const innerW = width - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const slot = innerW / Math.max(1, runs.length);
  const barW = Math.max(2, Math.min(40, slot * 0.72));
  runs.forEach((r, i) => {
    const v = values[i];
    const bx = PAD.left + slot * i + (slot - barW) / 2;
    if (v === null || v === undefined) {
      // No figure (a run that left no snapshot): a mark on the axis says so.
      svg.append(s("text", { x: (bx + barW / 2).toFixed(1), y: (PAD.top + innerH - 3).toFixed(1), "text-anchor": "middle", class: "chart-none" }, "×",
        s("title", null, `${fmt.dateTime(r.created_at)}: ${LABEL[r.outcome].toLowerCase()}, ${title}: none`)));
      return;
    }
    const hgt = Math.max(1, (innerH * v) / max);
    svg.append(s("rect", { x: bx.toFixed(1), y: (PAD.top + innerH - hgt).toFixed(1), width: barW.toFixed(1), height: hgt.toFixed(1), fill: `url(#${prefix}-${r.outcome})`, class: `bar-seg seg-${r.outcome}` },
      s("title", null, `${fmt.dateTime(r.created_at)}: ${LABEL[r.outcome].toLowerCase()}, ${title} ${tick(v)}`)));
  });
  svg.append(s("text", { x: PAD.left, y: HEIGHT - 8, class: "chart-tick" }, runs.length ? "oldest" : ""),
    s("text", { x: width - PAD.right, y: HEIGHT - 8, class: "chart-tick", "text-anchor": "end" }, runs.length ? "newest" : ""));
  return svg;
}

/** A source's last runs: duration and bytes added per run, and its success streak. */
export function drawSourceRuns(host, data) {
  const width = widthOf(host);
  const runs = data.runs || [];
  const fig = h("figure", {
    class: "chart", id: "chart-source-runs",
    dataset: { source: data.name, runs: String(runs.length), streak: String(data.success_streak) },
  });
  host.replaceChildren(fig);
  const streak = `${fmt.number(data.success_streak)} successful run${data.success_streak === 1 ? "" : "s"} in a row`;
  const counts = OUTCOMES.map(([k, l]) => [l, runs.filter((r) => r.outcome === k).length]).filter(([, n]) => n).map(([l, n]) => `${n} ${l.toLowerCase()}`).join(", ");
  const head = h("p", { class: "chart-streak", id: "source-streak" }, h("strong", null, streak), runs.length ? h("span", { class: "muted" }, ` · last ${runs.length} run(s): ${counts}`) : null);
  if (!runs.length) {
    fig.append(head, h("figcaption", { class: "chart-caption" }, `${data.name} has no finished run yet.`));
    return fig;
  }
  const durations = runs.map((r) => r.duration_ms ?? null);
  const added = runs.map((r) => r.bytes_added ?? null);
  const total = (vs) => vs.reduce((n, v) => n + (v || 0), 0);
  const dur = runBars(width, runs, durations, "duration",
    `Duration of the last ${runs.length} runs of ${data.name}, oldest first: longest ${fmt.duration(Math.max(...durations.map((v) => v || 0)))}.`, (v) => fmt.duration(v), "runs-dur");
  const bytesSvg = runBars(width, runs, added, "added",
    `Bytes added by the last ${runs.length} runs of ${data.name}, oldest first: ${fmt.bytes(total(added))} in all.`, (v) => fmt.bytes(v), "runs-add", true);
  const rows = runs.slice().reverse().map((r) => h("tr", { dataset: { jobId: r.job_id, outcome: r.outcome } },
    h("td", null, fmt.dateTime(r.started_at || r.created_at)), h("td", null, LABEL[r.outcome]),
    h("td", { class: "num" }, r.duration_ms == null ? "—" : fmt.duration(r.duration_ms)),
    h("td", { class: "num" }, r.bytes_added == null ? "—" : fmt.bytes(r.bytes_added))));
  fig.append(head,
    h("h3", { class: "chart-title" }, "Duration per run"), dur,
    h("h3", { class: "chart-title" }, "Bytes added per run"), bytesSvg,
    legend("runs-dur", [...new Set(runs.map((r) => r.outcome))]),
    h("figcaption", { class: "chart-caption" }, `The last ${runs.length} finished run(s) of ${data.name}, oldest on the left; × marks a run that left no snapshot.`),
    dataTable(`Last runs of ${data.name}`, ["Started", "Outcome", "Duration", "Added"], rows));
  return fig;
}
