// My account: who I am, what my role allows, and changing my password.

import { post } from "../api.js";
import { h, badge, button, pageHeader, card, field, input, errorBox, toast } from "../dom.js";
import * as fmt from "../format.js";

export function render(ctx) {
  const { user, permissions, session_expires_at: expires } = ctx.me;
  ctx.main.append(pageHeader("My account", "Your sign-in and password."));
  const current = input({ id: "password-current", type: "password", autocomplete: "current-password", required: true });
  const next = input({ id: "password-new", type: "password", autocomplete: "new-password", required: true, minlength: "12" });
  const again = input({ id: "password-confirm", type: "password", autocomplete: "new-password", required: true });
  const error = errorBox("password-error");
  const save = button("Change password", null, { variant: "primary", type: "submit", id: "password-save", mutating: true });
  const form = h("form", { class: "stack", novalidate: true },
    field("Current password", current),
    field("New password", next, "At least 12 characters, not your username."),
    field("New password again", again),
    error,
    h("div", { class: "form-actions" }, save));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.show(null);
    if (next.value !== again.value) { error.show("The new passwords differ."); again.focus(); return; }
    save.disabled = true;
    try {
      await post("/api/me/password", { current_password: current.value, new_password: next.value });
      current.value = ""; next.value = ""; again.value = "";
      toast("Your password has been changed.", "success");
    } catch (e) {
      error.show(e);
    } finally {
      save.disabled = false;
    }
  });
  ctx.main.append(h("div", { class: "grid-2" },
    card("Signed in as", h("dl", { class: "kv" },
      h("dt", null, "User"), h("dd", null, h("strong", null, user.username)),
      h("dt", null, "Role"), h("dd", null, badge(user.role, "info")),
      h("dt", null, "May"), h("dd", null, permissions.map((p) => p.replaceAll("_", " ")).join(", ")),
      h("dt", null, "Session ends"), h("dd", null, fmt.dateTime(expires))),
    ),
    card("Change password", form)));
  ctx.main.append(card("API tokens", h("p", null,
    "Scripts, CI jobs and generated API clients sign in with a personal access token instead of your password. ",
    h("a", { id: "account-tokens", href: "#/tokens" }, "Manage your tokens"), ".")));
  ctx.ready();
}
