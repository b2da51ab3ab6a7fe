// Formatting of sizes, times and durations, the same way on every page.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (n === undefined || n === null || Number.isNaN(Number(n))) return "—";
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  const digits = i === 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0;
  return `${v.toFixed(digits)} ${UNITS[i]}`;
}

export function number(n) {
  if (n === undefined || n === null) return "—";
  return Number(n).toLocaleString("en-US");
}

const pad = (n) => String(n).padStart(2, "0");

/** `2026-03-14 09:26` in the browser's time zone. */
export function dateTime(iso, withSeconds = false) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  const s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withSeconds ? `${s}:${pad(d.getSeconds())}` : s;
}

/** "3 min ago", "in 2 h". */
export function relative(iso, now = Date.now()) {
  if (!iso) return "never";
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return "—";
  const diff = Math.round((t - now) / 1000);
  const abs = Math.abs(diff);
  let text;
  if (abs < 45) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 86400 * 2) text = `${Math.round(abs / 3600)} h`;
  else text = `${Math.round(abs / 86400)} days`;
  if (abs < 10) return "just now";
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

export function duration(ms) {
  if (ms === undefined || ms === null) return "—";
  const s = ms / 1000;
  if (s < 1) return `${Math.round(ms)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function eta(secs) {
  if (secs === undefined || secs === null) return "";
  return duration(secs * 1000);
}

export const shortId = (id) => (id ? String(id).slice(0, 12) : "—");

/** `YYYY-MM-DD` of a Date in local time, for `<input type="date">`. */
export function dateInput(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** RFC 3339 start of a local day from an `<input type="date">` value. */
export function dayStart(value) {
  if (!value) return "";
  const d = new Date(`${value}T00:00:00`);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** RFC 3339 start of the day after (the API's `to` is exclusive). */
export function dayEnd(value) {
  if (!value) return "";
  const d = new Date(`${value}T00:00:00`);
  if (Number.isNaN(d.getTime())) return "";
  d.setDate(d.getDate() + 1);
  return d.toISOString();
}

export function mode(m) {
  if (m === undefined || m === null) return "";
  const chars = "rwxrwxrwx";
  let s = "";
  for (let i = 0; i < 9; i += 1) s += m & (1 << (8 - i)) ? chars[i] : "-";
  return s;
}

/** "last 10 · daily 7 · max 90 days" for a retention rule set. */
export function retention(r) {
  if (!r) return "—";
  const parts = [];
  if (r.max_backups) parts.push(`last ${r.max_backups}`);
  if (r.keep_within_days) parts.push(`all within ${r.keep_within_days} d`);
  if (r.keep_daily) parts.push(`daily ${r.keep_daily}`);
  if (r.keep_weekly) parts.push(`weekly ${r.keep_weekly}`);
  if (r.keep_monthly) parts.push(`monthly ${r.keep_monthly}`);
  if (r.keep_yearly) parts.push(`yearly ${r.keep_yearly}`);
  if (r.max_age_days) parts.push(`max ${r.max_age_days} days`);
  return parts.length ? parts.join(" · ") : "keep everything";
}
