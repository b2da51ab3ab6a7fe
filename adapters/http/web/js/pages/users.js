// Users: list, create, change role, deactivate/reactivate, reset password.

import { get, post, patch, seg } from "../api.js";
import { h, clear, badge, button, pageHeader, emptyState, loading, table, td, toast, toastError,
  openDialog, confirmDialog, field, input, select, errorBox } from "../dom.js";
import * as fmt from "../format.js";

const ROLE_HELP = {
  admin: "Everything, including users, settings and the audit log.",
  operator: "View, back up and restore.",
  viewer: "View only.",
};

function roleOptions(roles) {
  return roles.map((r) => [r.name, `${r.name[0].toUpperCase()}${r.name.slice(1)}`]);
}

function createDialog(roles, onDone) {
  const username = input({ id: "user-username", name: "username", required: true, maxlength: "64", autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
  const password = input({ id: "user-password", name: "password", type: "password", required: true, autocomplete: "new-password", minlength: "12" });
  const role = select(roleOptions(roles), { id: "user-role", value: "viewer" });
  const roleHint = h("p", { class: "hint" }, ROLE_HELP.viewer);
  role.addEventListener("change", () => { roleHint.textContent = ROLE_HELP[role.value] || ""; });
  const error = errorBox("user-error");
  const save = button("Create user", null, { variant: "primary", id: "user-save", type: "submit", mutating: true });
  save.setAttribute("form", "user-form");
  const form = h("form", { id: "user-form", class: "stack", novalidate: true },
    field("Username", username, "Letters, digits, “.”, “_” and “-”."),
    field("Initial password", password, "At least 12 characters, not the username. Share it safely; they can change it after signing in."),
    h("div", { class: "field" }, h("label", { for: "user-role" }, "Role"), role, roleHint),
    error);
  const d = openDialog({ id: "user-dialog", title: "New user", content: form, actions: [button("Cancel", () => d.close(), { variant: "ghost" }), save] });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.show(null);
    save.disabled = true;
    try {
      const u = await post("/api/users", { username: username.value.trim(), password: password.value, role: role.value });
      d.close();
      toast(`User ${u.username} created.`, "success");
      onDone();
    } catch (e) {
      error.show(e);
      save.disabled = false;
    }
  });
}

function resetDialog(user) {
  const password = input({ id: "reset-password", name: "password", type: "password", required: true, autocomplete: "new-password", minlength: "12" });
  const error = errorBox("reset-error");
  const save = button("Set password", null, { variant: "primary", id: "reset-save", type: "submit", mutating: true });
  save.setAttribute("form", "reset-form");
  const form = h("form", { id: "reset-form", class: "stack", novalidate: true },
    field(`New password for ${user.username}`, password, "At least 12 characters, not the username. Their current sessions end."),
    error);
  const d = openDialog({ id: "reset-dialog", title: "Reset password", content: form, actions: [button("Cancel", () => d.close(), { variant: "ghost" }), save] });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.show(null);
    save.disabled = true;
    try {
      await post(`/api/users/${seg(user.id)}/password`, { password: password.value });
      d.close();
      toast(`Password of ${user.username} reset.`, "success");
    } catch (e) {
      error.show(e);
      save.disabled = false;
    }
  });
}

export async function render(ctx) {
  const main = ctx.main;
  const me = ctx.me.user;
  let roles = [{ name: "admin" }, { name: "operator" }, { name: "viewer" }];
  const add = button("New user", () => createDialog(roles, () => load(true)), { variant: "primary", icon: "plus", mutating: true, id: "user-add" });
  const tokensLink = h("a", { id: "users-tokens", class: "btn btn-ghost", href: "#/tokens" }, "API tokens");
  main.append(pageHeader("Users", "Who may sign in, and what their role allows.", tokensLink, add));
  const body = h("div", null, loading());
  main.append(h("section", { class: "card", "aria-label": "Users" }, body));

  async function update(user, changes, message) {
    try {
      await patch(`/api/users/${seg(user.id)}`, changes);
      toast(message, "success");
    } catch (e) {
      toastError(e);
    }
    load();
  }

  function row(u) {
    const self = u.id === me.id;
    const roleSel = select(roleOptions(roles), { id: `role-${u.id}`, class: "input inline-select", value: u.role, disabled: self, dataset: { action: "role" } });
    roleSel.dataset.mutating = "";
    roleSel.addEventListener("change", () => update(u, { role: roleSel.value }, `${u.username} is now ${roleSel.value}.`));
    const actions = [
      button("Reset password", () => resetDialog(u), { small: true, variant: "ghost", mutating: true, dataset: { action: "reset-password" } }),
      u.is_active
        ? button("Deactivate", async () => {
          const ok = await confirmDialog({ title: `Deactivate ${u.username}?`, message: "They can no longer sign in and their sessions end. Their audit history is kept; you can reactivate them later.", confirm: "Deactivate", danger: true });
          if (ok) update(u, { is_active: false }, `${u.username} deactivated.`);
        }, { small: true, variant: "ghost", class: "btn-danger-ghost", mutating: true, disabled: self, dataset: { action: "deactivate" } })
        : button("Reactivate", () => update(u, { is_active: true }, `${u.username} reactivated.`), { small: true, variant: "ghost", mutating: true, dataset: { action: "reactivate" } }),
    ];
    return h("tr", { dataset: { user: u.username } },
      td(h("span", null, h("strong", null, u.username), self ? h("span", { class: "muted" }, " (you)") : null)),
      td([h("label", { class: "sr-only", for: roleSel.id }, `Role of ${u.username}`), roleSel]),
      td(u.is_active ? badge("Active", "ok") : badge("Deactivated", "neutral")),
      td(fmt.dateTime(u.created_at), "time"),
      td(u.last_login ? h("span", { title: fmt.dateTime(u.last_login, true) }, fmt.relative(u.last_login)) : h("span", { class: "muted" }, "Never"), "time"),
      td(h("div", { class: "actions-inner" }, actions), "actions"));
  }

  async function load(explicit = false) {
    if (explicit) ctx.busy();
    const users = await get("/api/users", null, { signal: ctx.signal });
    clear(body);
    if (!users.length) body.append(emptyState("users", "No users", "Create the first account."));
    else body.append(table(["User", "Role", "Status", "Created", "Last sign-in", ["Actions", "actions"]], users.map(row), { label: "Users" }));
    ctx.ready();
  }

  try {
    roles = await get("/api/roles", null, { signal: ctx.signal });
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  await load(true);
}
