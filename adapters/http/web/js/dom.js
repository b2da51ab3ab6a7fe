// DOM helpers. Everything is built with createElement and textContent: no HTML strings,
// so nothing the server returns can become markup.

import { fetchDownload, sessionAlive } from "./api.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * h("button", {class: "btn", onclick: fn, dataset: {action: "x"}}, "Label", child, ...)
 * Attributes starting with "on" become listeners; `true` sets a boolean attribute,
 * `false`/null/undefined leave it out.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "value" && "value" in el) el.value = v;
      else if (k === "checked" || k === "selected") el[k] = Boolean(v);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// 24×24 stroke icons (paths in the style of Lucide/Feather, drawn for this project).
const ICONS = {
  overview: ["M3 3h7v9H3z", "M14 3h7v5h-7z", "M14 12h7v9h-7z", "M3 16h7v5H3z"],
  backups: ["M21 8v13H3V8", "M1 3h22v5H1z", "M10 12h4"],
  sources: ["M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"],
  users: ["M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2", "M9 3a4 4 0 1 1 0 8 4 4 0 0 1 0-8z", "M23 21v-2a4 4 0 0 0-3-3.87", "M16 3.13a4 4 0 0 1 0 7.75"],
  audit: ["M9 11l3 3L22 4", "M21 12v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h11"],
  reports: ["M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z", "M14 2v6h6", "M8 13h8", "M8 17h8", "M8 9h2"],
  settings: ["M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z", "M19.4 15a1.65 1.65 0 0 0 .33 1.82l.06.06a2 2 0 1 1-2.83 2.83l-.06-.06a1.65 1.65 0 0 0-1.82-.33 1.65 1.65 0 0 0-1 1.51V21a2 2 0 1 1-4 0v-.09A1.65 1.65 0 0 0 9 19.4a1.65 1.65 0 0 0-1.82.33l-.06.06a2 2 0 1 1-2.83-2.83l.06-.06A1.65 1.65 0 0 0 4.68 15a1.65 1.65 0 0 0-1.51-1H3a2 2 0 1 1 0-4h.09A1.65 1.65 0 0 0 4.6 9a1.65 1.65 0 0 0-.33-1.82l-.06-.06a2 2 0 1 1 2.83-2.83l.06.06A1.65 1.65 0 0 0 9 4.68a1.65 1.65 0 0 0 1-1.51V3a2 2 0 1 1 4 0v.09a1.65 1.65 0 0 0 1 1.51 1.65 1.65 0 0 0 1.82-.33l.06-.06a2 2 0 1 1 2.83 2.83l-.06.06A1.65 1.65 0 0 0 19.4 9a1.65 1.65 0 0 0 1.51 1H21a2 2 0 1 1 0 4h-.09a1.65 1.65 0 0 0-1.51 1z"],
  browse: ["M2 7a2 2 0 0 1 2-2h5l2 2h9a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2z", "M2 11h20"],
  folder: ["M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"],
  file: ["M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z", "M14 2v6h6"],
  link: ["M10 13a5 5 0 0 0 7.54.54l3-3a5 5 0 0 0-7.07-7.07l-1.72 1.71", "M14 11a5 5 0 0 0-7.54-.54l-3 3a5 5 0 0 0 7.07 7.07l1.71-1.71"],
  restore: ["M1 4v6h6", "M3.51 15a9 9 0 1 0 2.13-9.36L1 10"],
  verify: ["M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z", "M9 12l2 2 4-4"],
  download: ["M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4", "M7 10l5 5 5-5", "M12 15V3"],
  protect: ["M5 11h14v10H5z", "M7 11V7a5 5 0 0 1 10 0v4"],
  unprotect: ["M5 11h14v10H5z", "M7 11V7a5 5 0 0 1 9.9-1"],
  delete: ["M3 6h18", "M19 6l-1 14a2 2 0 0 1-2 2H8a2 2 0 0 1-2-2L5 6", "M10 11v6", "M14 11v6", "M9 6V4a1 1 0 0 1 1-1h4a1 1 0 0 1 1 1v2"],
  play: ["M5 3l14 9-14 9z"],
  plus: ["M12 5v14", "M5 12h14"],
  edit: ["M12 20h9", "M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4z"],
  refresh: ["M23 4v6h-6", "M1 20v-6h6", "M3.51 9a9 9 0 0 1 14.85-3.36L23 10", "M1 14l4.64 4.36A9 9 0 0 0 20.49 15"],
  logout: ["M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4", "M16 17l5-5-5-5", "M21 12H9"],
  key: ["M21 2l-2 2", "M15.5 7.5l3 3L22 7l-3-3", "M11.39 11.61a5.5 5.5 0 1 1-7.78 7.78 5.5 5.5 0 0 1 7.78-7.78z", "M11.4 11.6L19 4"],
  alert: ["M10.29 3.86L1.82 18a2 2 0 0 0 1.71 3h16.94a2 2 0 0 0 1.71-3L13.71 3.86a2 2 0 0 0-3.42 0z", "M12 9v4", "M12 17h.01"],
  check: ["M20 6L9 17l-5-5"],
  x: ["M18 6L6 18", "M6 6l12 12"],
  pause: ["M6 4h4v16H6z", "M14 4h4v16h-4z"],
  clock: ["M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z", "M12 6v6l4 2"],
  disk: ["M22 12H2", "M5.45 5.11L2 12v6a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-6l-3.45-6.89A2 2 0 0 0 16.76 4H7.24a2 2 0 0 0-1.79 1.11z", "M6 16h.01", "M10 16h.01"],
  database: ["M12 8c4.97 0 9-1.34 9-3s-4.03-3-9-3-9 1.34-9 3 4.03 3 9 3z", "M21 12c0 1.66-4 3-9 3s-9-1.34-9-3", "M3 5v14c0 1.66 4 3 9 3s9-1.34 9-3V5"],
  calendar: ["M3 4h18v18H3z", "M16 2v4", "M8 2v4", "M3 10h18"],
  user: ["M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2", "M12 3a4 4 0 1 1 0 8 4 4 0 0 1 0-8z"],
  copy: ["M9 9h13v13H9z", "M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1"],
  chevron: ["M9 18l6-6-6-6"],
  info: ["M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z", "M12 16v-4", "M12 8h.01"],
  stop: ["M6 6h12v12H6z"],
};

export function icon(name, cls = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of ICONS[name] || ICONS.info) {
    const p = document.createElementNS(SVG_NS, "path");
    p.setAttribute("d", d);
    svg.append(p);
  }
  return svg;
}

/** A button. `opts.mutating` adds data-mutating; `opts.icon` an icon before the label. */
export function button(label, onClick, opts = {}) {
  const b = h("button", {
    type: opts.type || "button",
    class: ["btn", opts.variant ? `btn-${opts.variant}` : "", opts.small ? "btn-sm" : "", opts.iconOnly ? "btn-icon" : "", opts.class],
    onclick: onClick,
    id: opts.id,
    title: opts.title || (opts.iconOnly ? label : undefined),
    "aria-label": opts.iconOnly ? label : undefined,
    disabled: opts.disabled,
    dataset: opts.dataset,
  });
  if (opts.mutating) b.dataset.mutating = "";
  if (opts.icon) b.append(icon(opts.icon));
  if (!opts.iconOnly) b.append(h("span", null, label));
  return b;
}

export function badge(text, tone = "neutral", title) {
  return h("span", { class: `badge badge-${tone}`, title }, text);
}

// ---- toasts -------------------------------------------------------------------------

let toastTimer = null;

/** Shows a message in #toast (role="status"); errors are also announced with role="alert". */
export function toast(message, tone = "info") {
  const box = document.getElementById("toast");
  if (!box) return;
  clear(box);
  const item = h("div", { class: `toast toast-${tone}`, role: tone === "error" ? "alert" : null },
    icon(tone === "error" ? "alert" : tone === "success" ? "check" : "info"),
    h("span", null, message),
    h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: () => clear(box) }, icon("x")));
  box.append(item);
  box.classList.add("is-visible");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { clear(box); box.classList.remove("is-visible"); }, tone === "error" ? 9000 : 5000);
}

export function errorMessage(e) {
  if (!e) return "Something went wrong.";
  if (e.status === 429 && e.retryAfter && !/\d/.test(e.message)) {
    return `${e.message} Try again in ${e.retryAfter} s.`;
  }
  return e.message || String(e);
}

export function toastError(e) {
  if (e && e.name === "AbortError") return;
  toast(errorMessage(e), "error");
}

/** An inline error box (role="alert"), hidden while empty. */
export function errorBox(id) {
  const el = h("div", { class: "form-error", role: "alert", id, hidden: true });
  el.show = (e) => {
    clear(el);
    if (e) {
      el.append(icon("alert"), h("span", null, typeof e === "string" ? e : errorMessage(e)));
      el.hidden = false;
    } else {
      el.hidden = true;
    }
  };
  return el;
}

// ---- dialogs ------------------------------------------------------------------------

/**
 * A modal <dialog>: focus goes to the first control, Escape closes it, focus returns to
 * what opened it. Returns {dialog, body, footer, close}.
 */
export function openDialog({ id, title, subtitle, wide, content, actions = [], onClose }) {
  const opener = document.activeElement;
  const titleId = `${id || "dialog"}-title`;
  const body = h("div", { class: "dialog-body" }, content);
  const footer = h("div", { class: "dialog-footer" }, actions);
  const closeBtn = h("button", { type: "button", class: "btn btn-icon btn-ghost dialog-close", "aria-label": "Close", title: "Close" }, icon("x"));
  const dialog = h("dialog", { id, class: ["dialog", wide ? "dialog-wide" : ""], "aria-labelledby": titleId },
    h("div", { class: "dialog-header" },
      h("div", null, h("h2", { id: titleId }, title), subtitle ? h("p", { class: "muted" }, subtitle) : null),
      closeBtn),
    body, footer);
  const close = () => { if (dialog.open) dialog.close(); };
  closeBtn.addEventListener("click", close);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onClose) onClose();
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
  });
  dialog.addEventListener("click", (ev) => { if (ev.target === dialog) close(); });
  document.body.append(dialog);
  dialog.showModal();
  const first = body.querySelector("input:not([type=hidden]):not([disabled]), select, textarea") || footer.querySelector("button");
  if (first) first.focus();
  return { dialog, body, footer, close };
}

/** A confirmation dialog; resolves true when confirmed. */
export function confirmDialog({ title, message, confirm = "Confirm", danger = false, id = "confirm-dialog" }) {
  return new Promise((resolve) => {
    let answered = false;
    const ok = button(confirm, () => { answered = true; d.close(); resolve(true); }, { variant: danger ? "danger" : "primary", id: `${id}-confirm`, mutating: true });
    const cancel = button("Cancel", () => d.close(), { variant: "ghost" });
    const d = openDialog({ id, title, content: h("p", null, message), actions: [cancel, ok], onClose: () => { if (!answered) resolve(false); } });
    // The safe choice has the focus: Enter or Space must never delete by accident.
    cancel.focus();
  });
}

// ---- forms --------------------------------------------------------------------------

/** A labelled field. `control` is an input/select; `hint` optional help text. */
export function field(label, control, hint, cls) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: ["field", cls] }, h("label", { for: id }, label), control, hintEl);
}

export function input(attrs) {
  return h("input", { class: "input", ...attrs });
}

export function select(options, attrs = {}) {
  const s = h("select", { class: "input", ...attrs });
  for (const o of options) {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    s.append(h("option", { value, selected: String(attrs.value ?? "") === String(value) }, label));
  }
  if (attrs.value !== undefined) s.value = attrs.value;
  return s;
}

export function checkbox(label, attrs = {}) {
  const box = h("input", { type: "checkbox", ...attrs });
  const id = box.id || `c-${Math.random().toString(36).slice(2, 9)}`;
  box.id = id;
  return { box, el: h("div", { class: "check" }, box, h("label", { for: id }, label)) };
}

// ---- page pieces --------------------------------------------------------------------

export function pageHeader(title, subtitle, ...actions) {
  return h("div", { class: "page-header" },
    h("div", null, h("h1", null, title), subtitle ? h("p", { class: "muted" }, subtitle) : null),
    h("div", { class: "page-actions" }, actions));
}

export function card(title, content, opts = {}) {
  return h("section", { class: ["card", opts.class], "aria-label": title || undefined },
    title ? h("div", { class: "card-header" }, h("h2", null, title), opts.actions ? h("div", { class: "card-actions" }, opts.actions) : null) : null,
    h("div", { class: ["card-body", opts.flush ? "flush" : ""] }, content));
}

export function emptyState(iconName, title, text, action) {
  return h("div", { class: "empty" }, h("div", { class: "empty-icon" }, icon(iconName)), h("p", { class: "empty-title" }, title), text ? h("p", { class: "muted" }, text) : null, action || null);
}

export function loading(text = "Loading…") {
  return h("div", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

/** A table inside a horizontally scrolling wrapper. `columns`: [label, class?]. */
export function table(columns, rows, opts = {}) {
  const thead = h("thead", null, h("tr", null, columns.map((c) => {
    const [label, cls] = Array.isArray(c) ? c : [c];
    return h("th", { scope: "col", class: cls }, label);
  })));
  const tbody = h("tbody", null, rows);
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": opts.label || "Table" },
    h("table", { class: ["table", opts.class] }, opts.caption ? h("caption", { class: "sr-only" }, opts.caption) : null, thead, tbody));
}

export function td(content, cls, attrs = {}) {
  return h("td", { class: cls, ...attrs }, content);
}

/** "1–25 of 130" with previous/next buttons. */
export function pager({ offset, limit, total, onPage, count }) {
  const from = total === 0 ? 0 : offset + 1;
  const to = offset + (count ?? Math.min(limit, total - offset));
  const prev = button("Previous", () => onPage(Math.max(0, offset - limit)), { small: true, variant: "ghost", disabled: offset === 0 });
  const next = button("Next", () => onPage(offset + limit), { small: true, variant: "ghost", disabled: to >= total });
  prev.dataset.pager = "prev";
  next.dataset.pager = "next";
  return h("div", { class: "pager" }, h("span", { class: "muted" }, `${from}–${to} of ${total.toLocaleString("en-US")}`), h("div", { class: "pager-buttons" }, prev, next));
}

/** A percentage bar (CSSOM width; the CSP forbids style attributes). */
export function bar(percent, tone = "ok", label) {
  const fill = h("div", { class: `bar-fill bar-${tone}` });
  fill.style.width = `${Math.max(0, Math.min(100, percent))}%`;
  return h("div", { class: "bar", role: "img", "aria-label": label || `${Math.round(percent)}%` }, fill);
}

export function debounce(fn, ms) {
  let t = null;
  const d = (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}

// ---- downloads ----------------------------------------------------------------------

/**
 * A download link for a bounded export (CSV, PDF). It keeps a real `href` and the
 * `download` attribute, but a click fetches the file first (`request()` gives
 * `[path, params]`, or null after `validate()` has shown why not) and saves it only when
 * the server answered with the file; an error is shown with `onError` (default: a
 * toast) instead of being saved as a file. `validate()` returns an error message or null.
 */
export function exportLink({ id, label, iconName = "download", cls = "btn btn-primary", request, validate, onError, onStart, fallbackName }) {
  const a = h("a", { class: cls, id, download: "" }, icon(iconName), h("span", null, label));
  const fail = onError || toastError;
  a.addEventListener("click", async (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    if (a.getAttribute("aria-busy") === "true") return;
    const problem = validate ? validate() : null;
    if (problem) {
      fail(problem);
      return;
    }
    const [path, params] = request();
    if (onStart) onStart();
    a.setAttribute("aria-busy", "true");
    a.classList.add("is-busy");
    try {
      await fetchDownload(path, params, { fallbackName });
    } catch (e) {
      if (e.name !== "AbortError") fail(e);
    } finally {
      a.removeAttribute("aria-busy");
      a.classList.remove("is-busy");
    }
  });
  return a;
}

/**
 * Makes a plain download link (a snapshot archive: too big for memory, so the browser
 * streams it to disk itself) check the session first: an expired session goes to the
 * login page instead of saving the server's error as the file. Other failures of the
 * download itself (a missing path, a full disk) still arrive as the file; see the README.
 */
export function guardDownload(a) {
  let confirmed = false;
  const precheck = () => { sessionAlive().catch(() => {}); };
  a.addEventListener("pointerenter", precheck);
  a.addEventListener("focus", precheck);
  a.addEventListener("click", async (ev) => {
    if (confirmed) { confirmed = false; return; }
    ev.preventDefault();
    try {
      if (!(await sessionAlive())) return;
    } catch (e) {
      toastError(e);
      return;
    }
    confirmed = true;
    a.click();
  });
  return a;
}
