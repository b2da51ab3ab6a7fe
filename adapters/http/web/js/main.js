// The dashboard's shell: session, navigation, hash router, login page, footer.
// Each page module exports `render(ctx)`; ctx carries the page's lifetime (timers and
// requests end when the page is left) and the signed-in user's permissions.

import { api, get, post, setCsrf, setUnauthorizedHandler } from "./api.js";
import { h, clear, icon, badge, errorBox, field, input, toast, errorMessage } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as backups from "./pages/backups.js";
import * as browse from "./pages/browse.js";
import * as sources from "./pages/sources.js";
import * as users from "./pages/users.js";
import * as tokens from "./pages/tokens.js";
import * as audit from "./pages/audit.js";
import * as reports from "./pages/reports.js";
import * as settings from "./pages/settings.js";
import * as account from "./pages/account.js";
import * as tasks from "./pages/tasks.js";
import * as task from "./pages/task.js";

const any = (...perms) => (can) => perms.some((p) => can(p));

/** Navigation entries, in order; `allowed` decides whether the link exists at all. */
const NAV = [
  { name: "overview", label: "Overview", icon: "overview", allowed: any("view"), page: overview },
  { name: "backups", label: "Backups", icon: "backups", allowed: any("view"), page: backups },
  { name: "sources", label: "Sources", icon: "sources", allowed: any("manage_system", "backup"), page: sources },
  { name: "tasks", label: "Tasks", icon: "clock", allowed: any("view"), page: tasks },
  { name: "users", label: "Users", icon: "users", allowed: any("manage_users"), page: users },
  { name: "audit", label: "Audit log", icon: "audit", allowed: any("audit"), page: audit },
  { name: "reports", label: "Reports", icon: "reports", allowed: any("export"), page: reports },
  { name: "settings", label: "Settings", icon: "settings", allowed: any("manage_system"), page: settings },
];
const HIDDEN_PAGES = {
  browse: { allowed: any("restore"), page: browse, nav: "backups" },
  // One job and its log (`#/tasks/<id>`).
  task: { label: "Task", allowed: any("view"), page: task, nav: "tasks" },
  account: { allowed: () => true, page: account, nav: null },
  // Reached from My account (and, for admins, from Users): not a navigation link, since
  // every role may create tokens and a viewer's navigation leads to nothing that changes.
  tokens: { allowed: any("view"), page: tokens, nav: null },
};

const state = { me: null, ctx: null };
const main = () => document.getElementById("page");

function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

// ---- routing ------------------------------------------------------------------------

/** `#/backups/<id>/browse/<a>/<b>?x=1` → {name: "browse", id, path: "a/b", query}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart] = raw.split("?");
  const parts = pathPart.split("/").filter((p, i) => p !== "" || i === 0);
  const query = new URLSearchParams(queryPart || "");
  const decode = (s) => { try { return decodeURIComponent(s); } catch { return s; } };
  if (parts[0] === "backups" && parts[2] === "browse" && parts[1]) {
    return { name: "browse", id: decode(parts[1]), path: parts.slice(3).filter(Boolean).map(decode).join("/"), query };
  }
  if (parts[0] === "tasks" && parts[1]) return { name: "task", id: decode(parts[1]), query };
  return { name: parts[0] || "", query };
}

function makeCtx(route) {
  const controller = new AbortController();
  const timers = new Set();
  const leaveHooks = [];
  const el = main();
  const ctx = {
    route,
    left: false,
    signal: controller.signal,
    me: state.me,
    can,
    main: el,
    timeout(fn, ms) {
      const t = setTimeout(() => { timers.delete(t); if (!ctx.left) fn(); }, ms);
      timers.add(t);
      return t;
    },
    clearTimeout(t) { clearTimeout(t); timers.delete(t); },
    onLeave(fn) { leaveHooks.push(fn); },
    /** The page's data is loaded (again). */
    ready() { if (!ctx.left) el.dataset.ready = "true"; },
    /** The page is loading its data (again). */
    busy() { if (!ctx.left) el.dataset.ready = "false"; },
    leave() {
      ctx.left = true;
      controller.abort();
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const fn of leaveHooks) { try { fn(); } catch { /* leaving anyway */ } }
    },
    navigate(hash) { location.hash = hash; },
  };
  return ctx;
}

function firstAllowed() {
  const entry = NAV.find((n) => n.allowed(can));
  return entry ? entry.name : "account";
}

function route() {
  if (!state.me) return;
  const r = parseHash();
  let entry = NAV.find((n) => n.name === r.name);
  let navName = r.name;
  if (!entry && HIDDEN_PAGES[r.name]) {
    entry = HIDDEN_PAGES[r.name];
    navName = entry.nav;
  }
  if (!entry) {
    location.replace(`#/${firstAllowed()}`);
    return;
  }
  if (!entry.allowed(can)) {
    toast("Your role does not allow that page.", "error");
    location.replace(`#/${firstAllowed()}`);
    return;
  }
  if (state.ctx) state.ctx.leave();
  for (const dlg of document.querySelectorAll("dialog[open]")) dlg.close();
  const el = main();
  clear(el);
  el.dataset.page = r.name;
  el.dataset.ready = "false";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.nav === navName) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const ctx = makeCtx(r);
  state.ctx = ctx;
  document.title = `${entry.label || (r.name === "browse" ? "Browse" : "My account")} · Coffer`;
  Promise.resolve()
    .then(() => entry.page.render(ctx))
    .catch((e) => {
      if (ctx.left || e.name === "AbortError") return;
      clear(el);
      el.append(h("div", { class: "page-error", role: "alert" }, icon("alert"), h("div", null, h("strong", null, "This page could not be loaded."), h("p", null, errorMessage(e)))));
      ctx.ready();
    });
  el.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

// ---- shell --------------------------------------------------------------------------

function renderShell() {
  const me = state.me;
  document.body.classList.remove("signed-out");
  const nav = clear(document.getElementById("nav"));
  const list = h("ul", null);
  for (const n of NAV) {
    if (!n.allowed(can)) continue;
    list.append(h("li", null, h("a", { href: `#/${n.name}`, dataset: { nav: n.name } }, icon(n.icon), h("span", null, n.label))));
  }
  nav.append(list);
  const user = clear(document.getElementById("user"));
  user.append(
    h("a", { href: "#/account", class: "user-chip", title: "My account: change password" },
      icon("user"), h("span", { class: "user-name", id: "current-user" }, me.user.username),
      badge(me.user.role, me.user.role === "admin" ? "info" : "neutral")),
    h("button", { type: "button", id: "logout", class: "btn btn-ghost btn-sm", onclick: logout }, icon("logout"), h("span", null, "Sign out")));
  document.getElementById("topbar").hidden = false;
  nav.hidden = false;
}

async function logout() {
  try {
    await post("/api/logout", undefined, { auth: false });
  } catch {
    // The session is gone either way.
  }
  signedOut("You have signed out.");
}

function signedOut(notice) {
  if (state.ctx) state.ctx.leave();
  state.ctx = null;
  state.me = null;
  setCsrf(null);
  for (const dlg of document.querySelectorAll("dialog[open]")) dlg.close();
  renderLogin(notice);
}

// ---- login --------------------------------------------------------------------------

function renderLogin(notice) {
  document.body.classList.add("signed-out");
  document.getElementById("topbar").hidden = true;
  document.getElementById("nav").hidden = true;
  const el = clear(main());
  el.dataset.page = "login";
  document.title = "Sign in · Coffer";
  const username = input({ id: "login-username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const password = input({ id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = errorBox("login-error");
  const submit = h("button", { type: "submit", id: "login-submit", class: "btn btn-primary btn-block" }, "Sign in");
  const form = h("form", { class: "login-form", novalidate: true },
    notice ? h("p", { class: "notice", role: "status" }, icon("info"), h("span", null, notice)) : null,
    field("Username", username),
    field("Password", password),
    error,
    submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.show(null);
    if (!username.value.trim() || !password.value) {
      error.show("Enter your username and password.");
      (username.value.trim() ? password : username).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const session = await api("POST", "/api/login", { body: { username: username.value.trim(), password: password.value }, auth: false });
      setCsrf(session.csrf_token);
      await loadMe();
      password.value = "";
      if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.hash = `#/${firstAllowed()}`;
      else route();
    } catch (e) {
      let msg = errorMessage(e);
      if (e.status === 401 && e.code === "unauthorized") msg = e.message || "Wrong username or password.";
      error.show(msg);
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  el.append(h("div", { class: "login" },
    h("div", { class: "login-card" },
      h("div", { class: "login-brand" }, logo(), h("div", null, h("div", { class: "brand-name" }, "Coffer"), h("div", { class: "brand-sub" }, "Backup Server"))),
      h("h1", null, "Sign in"),
      h("p", { class: "muted" }, "Use your Coffer account. Sessions end after a period of inactivity."),
      form),
    h("p", { class: "login-foot muted" }, "Encrypted, deduplicated, verifiable backups — on storage you own.")));
  el.dataset.ready = "true";
  username.focus();
}

function logo() {
  return h("img", { src: "/assets/favicon.svg", alt: "", class: "logo", width: "32", height: "32" });
}

async function loadMe() {
  const me = await get("/api/me", null, { auth: false });
  setCsrf(me.csrf_token);
  state.me = me;
  renderShell();
}

async function loadFooter() {
  const foot = document.getElementById("footer");
  try {
    const health = await api("GET", "/api/health", { auth: false });
    clear(foot).append(
      h("span", null, `Coffer ${health.version}`),
      h("span", { class: "sep" }, "·"),
      h("span", { class: health.database === "ok" ? "" : "text-danger" }, `Database ${health.database}`),
      h("span", { class: "sep" }, "·"),
      h("span", { class: health.storage === "ok" ? "" : "text-danger" }, `Storage ${health.storage}`),
      h("span", { class: "sep" }, "·"),
      h("a", { href: "/swagger/" }, "API documentation"));
    foot.dataset.version = health.version;
  } catch (e) {
    clear(foot).append(h("span", { class: "text-danger" }, "Coffer · health unavailable"));
  }
}

async function start() {
  setUnauthorizedHandler(() => {
    if (state.me) signedOut("Your session has ended. Sign in again.");
  });
  window.addEventListener("hashchange", route);
  loadFooter();
  try {
    await loadMe();
  } catch (e) {
    renderLogin(e.status === 401 || e.status === 0 ? (e.status === 0 ? errorMessage(e) : null) : errorMessage(e));
    return;
  }
  if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.replace(`#/${firstAllowed()}`);
  else route();
}

start();
