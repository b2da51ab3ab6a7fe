// Tokens: personal access tokens for scripts and CI. Everyone lists, creates and revokes
// their own; with manage_users, everyone's (and tokens for other users). The secret is
// shown once, in the dialog that follows creation.

import { get, post, del, seg } from "../api.js";
import { h, clear, badge, button, pageHeader, emptyState, loading, table, td, toast, toastError,
  openDialog, confirmDialog, field, input, select, errorBox, checkbox } from "../dom.js";
import * as fmt from "../format.js";

const ROLES = ["admin", "operator", "viewer"];
const EXPIRY_DAYS = [["7", "7 days"], ["30", "30 days"], ["90", "90 days"], ["365", "1 year"]];

/** The roles at or below `role` (a token is never above its owner). */
function rolesUpTo(role) {
  return ROLES.slice(Math.max(0, ROLES.indexOf(role)));
}

function secretDialog(created) {
  const code = h("code", { id: "token-secret" }, created.token);
  const copy = button("Copy", async () => {
    try {
      await navigator.clipboard.writeText(created.token);
      toast("Token copied.", "success");
    } catch {
      toast("Copy it by hand: select the token.", "info");
    }
  }, { small: true, variant: "ghost", icon: "copy", id: "token-copy" });
  const d = openDialog({
    id: "token-created-dialog",
    title: `Token “${created.name}” created`,
    content: h("div", { class: "stack" },
      h("p", null, "Store this token now, where the script or CI job reads it. It is shown only this once; Coffer keeps only a hash of it."),
      h("div", { class: "command" }, code, copy),
      h("p", { class: "hint" }, "Send it as the header Authorization: Bearer <token>.")),
    actions: [button("Done", () => d.close(), { variant: "primary", id: "token-done" })],
  });
}

function createDialog(ctx, users, onDone) {
  const me = ctx.me.user;
  const admin = me.role === "admin";
  const name = input({ id: "token-name", name: "name", required: true, maxlength: "64", autocomplete: "off" });
  const expiryOptions = [...EXPIRY_DAYS];
  if (admin) expiryOptions.push(["never", "Never"]);
  const expiry = select(expiryOptions, { id: "token-expiry", value: "90" });
  const ownerSel = users
    ? select(users.filter((u) => u.is_active).map((u) => [String(u.id), u.username]), { id: "token-owner", value: String(me.id) })
    : null;
  const role = select([], { id: "token-role" });
  function fillRoles() {
    const owner = users && ownerSel ? users.find((u) => String(u.id) === ownerSel.value) : me;
    clear(role);
    role.append(h("option", { value: "" }, "Same as the owner"));
    for (const r of rolesUpTo(owner ? owner.role : me.role)) role.append(h("option", { value: r }, r[0].toUpperCase() + r.slice(1)));
  }
  fillRoles();
  if (ownerSel) ownerSel.addEventListener("change", fillRoles);
  const error = errorBox("token-error");
  const save = button("Create token", null, { variant: "primary", id: "token-save", type: "submit", mutating: true });
  save.setAttribute("form", "token-form");
  const form = h("form", { id: "token-form", class: "stack", novalidate: true },
    field("Name", name, "What it is for, e.g. “nightly CI”. Shown in the list and the audit log."),
    ownerSel ? field("Owner", ownerSel, "The token acts as this user.") : null,
    field("Expires", expiry, admin ? "Only admins may create tokens that never expire." : null),
    field("Role", role, "A narrower role limits what the token may do. It stops working if its owner loses that role or is deactivated."),
    error);
  const d = openDialog({ id: "token-dialog", title: "New token", content: form, actions: [button("Cancel", () => d.close(), { variant: "ghost" }), save] });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.show(null);
    if (!name.value.trim()) { error.show("Give the token a name."); name.focus(); return; }
    const body = { name: name.value.trim() };
    if (expiry.value !== "never") body.expires_at = new Date(Date.now() + Number(expiry.value) * 86_400_000).toISOString();
    if (role.value) body.role = role.value;
    if (ownerSel && ownerSel.value !== String(me.id)) body.user_id = Number(ownerSel.value);
    save.disabled = true;
    try {
      const created = await post("/api/tokens", body);
      d.close();
      secretDialog(created);
      onDone();
    } catch (e) {
      error.show(e);
      save.disabled = false;
    }
  });
}

export async function render(ctx) {
  const main = ctx.main;
  const me = ctx.me.user;
  const manage = ctx.can("manage_users");
  let users = null;
  const add = button("New token", () => createDialog(ctx, users, () => load(true)), { variant: "primary", icon: "plus", mutating: true, id: "token-add" });
  main.append(pageHeader("API tokens", "Personal access tokens for scripts, CI jobs and generated API clients.", add));
  const all = manage ? checkbox("Everyone's tokens", { id: "tokens-all" }) : null;
  if (all) main.append(h("div", { class: "filters" }, all.el));
  const body = h("div", null, loading());
  main.append(h("section", { class: "card", "aria-label": "Tokens" }, body));
  const allBox = all ? all.box : null;
  if (allBox) allBox.addEventListener("change", () => load(true));

  function row(t) {
    const revoke = button("Revoke", async () => {
      const ok = await confirmDialog({ title: `Revoke “${t.name}”?`, message: "Scripts and jobs using it are refused from now on. This cannot be undone.", confirm: "Revoke", danger: true });
      if (!ok) return;
      try {
        await del(`/api/tokens/${seg(t.id)}`);
        toast(`Token “${t.name}” revoked.`, "success");
      } catch (e) {
        toastError(e);
      }
      load();
    }, { small: true, variant: "ghost", class: "btn-danger-ghost", mutating: true, dataset: { action: "revoke" } });
    const expired = t.expires_at && new Date(t.expires_at).getTime() <= Date.now();
    return h("tr", { dataset: { token: String(t.id) } },
      td(h("strong", null, t.name)),
      showOwner() ? td(t.user_id === me.id ? h("span", null, t.username, h("span", { class: "muted" }, " (you)")) : t.username) : null,
      td(t.role ? badge(t.role, "info") : h("span", { class: "muted" }, "owner's")),
      td(fmt.dateTime(t.created_at), "time"),
      td(t.expires_at ? (expired ? badge("Expired", "neutral", fmt.dateTime(t.expires_at)) : fmt.dateTime(t.expires_at)) : h("span", { class: "muted" }, "Never"), "time"),
      td(t.last_used_at
        ? h("span", { title: fmt.dateTime(t.last_used_at, true) }, `${fmt.relative(t.last_used_at)}${t.last_used_ip ? ` from ${t.last_used_ip}` : ""}`)
        : h("span", { class: "muted" }, "Never"), "time"),
      td(h("div", { class: "actions-inner" }, [revoke]), "actions"));
  }

  function showOwner() {
    return Boolean(allBox && allBox.checked);
  }

  async function load(explicit = false) {
    if (explicit) ctx.busy();
    const tokens = await get("/api/tokens", showOwner() ? { all: true } : null, { signal: ctx.signal });
    clear(body);
    if (!tokens.length) {
      body.append(emptyState("key", "No tokens", "Create one for a script or CI job: it signs in as you, with your role or a narrower one."));
    } else {
      const columns = ["Name", ...(showOwner() ? ["Owner"] : []), "Role", "Created", "Expires", "Last used", ["Actions", "actions"]];
      body.append(table(columns, tokens.map(row), { label: "Tokens" }));
    }
    ctx.ready();
  }

  if (manage) {
    try {
      users = await get("/api/users", null, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError") return;
    }
  }
  await load(true);
}
