// Settings: storage quota, default retention, and the key export reminder.
// GET/PATCH /api/settings; `null` for a section returns it to the configuration file.

import { get, patch, post } from "../api.js";
import { h, clear, icon, badge, button, pageHeader, card, field, input, checkbox, errorBox, toast, loading } from "../dom.js";
import { retentionInputs } from "./sources.js";
import * as fmt from "../format.js";

function origin(from) {
  return from === "dashboard"
    ? badge("Set in the dashboard", "info", "Overrides the configuration file")
    : badge("From the configuration file", "neutral");
}

export async function render(ctx) {
  const main = ctx.main;
  main.append(pageHeader("Settings", "Storage quota, default retention and the encryption key."));
  const body = h("div", { class: "stack" }, loading());
  main.append(body);

  let settings;
  let storage = null;
  try {
    [settings, storage] = await Promise.all([
      get("/api/settings", null, { signal: ctx.signal }),
      get("/api/storage", null, { signal: ctx.signal }).catch(() => null),
    ]);
  } catch (e) {
    if (e.name === "AbortError") return;
    clear(body).append(h("div", { class: "page-error", role: "alert" }, icon("alert"),
      h("div", null, h("strong", null, "Settings could not be loaded."), h("p", null, e.message))));
    ctx.ready();
    return;
  }

  const keyBox = h("div");
  const quotaBox = h("div");
  const retentionBox = h("div");
  clear(body).append(keyBox, h("div", { class: "grid-2" }, quotaBox, retentionBox), emailCard());

  // Alerts by email ([notify.email] in the configuration): a test email shows that
  // alerts reach people before one is needed.
  function emailCard() {
    const result = h("p", { id: "test-email-result", class: "muted", "aria-live": "polite" });
    const send = button("Send a test email", async () => {
      try {
        ctx.busy();
        send.disabled = true;
        const r = await post("/api/notify/test", {});
        result.textContent = `Sent to ${r.sent_to}.`;
        toast("Test email sent.", "success");
      } catch (e) {
        result.textContent = e.message;
        toast(e.message, "error");
      } finally {
        send.disabled = false;
        ctx.ready();
      }
    }, { id: "send-test-email", icon: "alert", mutating: true });
    return card("Alerts by email", h("div", { class: "stack" },
      h("p", null, "New alerts (backup failed, source suspicious, quota, disk, key not exported, replica lagging, damage) are emailed through the SMTP server of the configuration's [notify.email], at most one email per alert kind and source per interval."),
      h("div", null, send), result));
  }

  function drawKey(s) {
    clear(keyBox);
    const k = s.key || {};
    const cmd = k.export_command || "coffer key export --output FILE";
    const copy = button("Copy", async () => {
      try {
        await navigator.clipboard.writeText(cmd);
        toast("Command copied.", "success");
      } catch {
        toast("Copy the command by selecting it.", "info");
      }
    }, { small: true, variant: "ghost", icon: "copy" });
    if (!k.exported) {
      keyBox.append(h("div", { class: "banner banner-danger", role: "alert", id: "key-reminder" }, icon("key"),
        h("div", { class: "banner-body" },
          h("strong", null, "Export the encryption key now — without it no backup can be restored."),
          h("span", null, "Every backup is encrypted with this server's key. If the server's disk is lost, the backups on your NAS are useless without a copy of the key. Run this on the server and keep the file offline, in a safe place:"),
          h("div", { class: "command" }, h("code", null, cmd), copy))));
    } else {
      keyBox.append(h("div", { class: "banner banner-ok", id: "key-reminder" }, icon("check"),
        h("div", { class: "banner-body" },
          h("strong", null, "The encryption key has been exported."),
          h("span", null, "Keep the copy offline and away from this server. Export it again after a key rotation:"),
          h("div", { class: "command" }, h("code", null, cmd), copy))));
    }
  }

  function drawQuota(s) {
    const q = s.quota;
    const max = input({ type: "number", min: "0", step: "1", id: "quota-max-mb", value: String(q.max_storage_mb ?? 0), inputmode: "numeric" });
    const warn = input({ type: "number", min: "0", step: "1", id: "quota-warning-mb", value: String(q.warning_threshold_mb ?? 0), inputmode: "numeric" });
    const error = errorBox("quota-error");
    const save = button("Save quota", null, { type: "submit", variant: "primary", mutating: true, id: "quota-save" });
    const reset = q.from === "dashboard"
      ? button("Use the configuration file", () => send({ quota: null }, "Quota returned to the configuration file.", null, drawQuota), { variant: "ghost", mutating: true, id: "quota-reset" })
      : null;
    const use = storage
      ? h("p", { class: "muted" }, `In use now: ${fmt.bytes(storage.stored_bytes)}${storage.disk_free_bytes !== undefined ? ` · ${fmt.bytes(storage.disk_free_bytes)} free on the disk` : ""}.`)
      : null;
    const form = h("form", { class: "stack", novalidate: true },
      h("div", { class: "form-grid" },
        field("Quota (MiB)", max, "0: no quota. New backups are refused above it."),
        field("Warning at (MiB)", warn, "0: no warning. An alert is raised above it.")),
      use, error, h("div", { class: "form-actions" }, reset, save));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.show(null);
      const m = Number.parseInt(max.value, 10) || 0;
      const w = Number.parseInt(warn.value, 10) || 0;
      if (m && w && w > m) { error.show("The warning threshold must not be above the quota."); warn.focus(); return; }
      save.disabled = true;
      await send({ quota: { max_storage_mb: m, warning_threshold_mb: w } }, "Quota saved.", error, drawQuota);
      save.disabled = false;
    });
    clear(quotaBox).append(card("Storage quota", form, { actions: [origin(q.from)] }));
  }

  function drawRetention(s) {
    const r = s.retention;
    const enabled = checkbox("Apply retention after every successful backup", { id: "settings-retention-enabled", checked: r.enabled });
    const rules = retentionInputs("settings-retention", r.rules || {});
    const error = errorBox("retention-error");
    const save = button("Save retention", null, { type: "submit", variant: "primary", mutating: true, id: "retention-save" });
    const reset = r.from === "dashboard"
      ? button("Use the configuration file", () => send({ retention: null }, "Retention returned to the configuration file.", null, drawRetention), { variant: "ghost", mutating: true, id: "retention-reset" })
      : null;
    const summary = h("p", { class: "muted" }, `Now: ${fmt.retention(r.rules)}.`);
    for (const el of Object.values(rules.inputs)) el.addEventListener("input", () => { summary.textContent = `Would be: ${fmt.retention(rules.read())}.`; });
    const form = h("form", { class: "stack", novalidate: true },
      enabled.el,
      h("p", { class: "hint" }, "The defaults for every source without its own rules. 0 turns a rule off. Protected snapshots and each source's newest complete snapshot are always kept."),
      rules.grid, summary, error, h("div", { class: "form-actions" }, reset, save));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.show(null);
      save.disabled = true;
      await send({ retention: { enabled: enabled.box.checked, rules: rules.read() } }, "Retention defaults saved.", error, drawRetention);
      save.disabled = false;
    });
    clear(retentionBox).append(card("Default retention", form, { actions: [origin(r.from)] }));
  }

  /**
   * Saves one section and redraws only it (`redraw`) and the key banner: the other
   * form keeps whatever is being typed into it.
   */
  async function send(changes, message, error, redraw) {
    try {
      ctx.busy();
      settings = await patch("/api/settings", changes);
      toast(message, "success");
      const focused = document.activeElement;
      drawKey(settings);
      redraw(settings);
      // Keyboard users stay where they were (the redrawn control has the same id).
      if (focused && !focused.isConnected && focused.id) document.getElementById(focused.id)?.focus();
      ctx.ready();
    } catch (e) {
      if (error) error.show(e);
      else toast(e.message, "error");
      ctx.ready();
    }
  }

  function draw(s) {
    drawKey(s);
    drawQuota(s);
    drawRetention(s);
    ctx.ready();
  }

  draw(settings);
}
