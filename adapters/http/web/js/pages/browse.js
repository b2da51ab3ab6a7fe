// Snapshot browser: walks GET /api/backups/{id}/tree one directory at a time, with
// breadcrumbs, and downloads a file or a folder as a tar (or zip) archive.

import { get, seg } from "../api.js";
import { h, clear, icon, badge, button, pageHeader, emptyState, loading, table, td, pager, guardDownload } from "../dom.js";
import { jobPanel, cancelRule } from "../jobs.js";
import { announce, browseHref, downloadHref, restoreDialog } from "./backups.js";
import * as fmt from "../format.js";

const PAGE_SIZE = 200;

const join = (dir, name) => (dir ? `${dir}/${name}` : name);

export async function render(ctx) {
  const main = ctx.main;
  const { id } = ctx.route;
  const path = ctx.route.path || "";
  let offset = 0;

  const snap = await get(`/api/backups/${seg(id)}`, null, { signal: ctx.signal });
  const panel = jobPanel(ctx, { onDone: announce, canCancel: cancelRule(ctx) });
  const here = path ? path.split("/").pop() : "";

  main.append(pageHeader(
    path ? here : `Snapshot ${fmt.shortId(snap.id)}`,
    h("span", null, `${snap.source_name} · taken ${fmt.dateTime(snap.created_at, true)} · `, h("span", { class: "mono", title: snap.id }, fmt.shortId(snap.id)), snap.protected ? [" · ", badge("Protected", "warn")] : null),
    h("a", { class: "btn btn-ghost", href: "#/backups" }, "All backups"),
    guardDownload(h("a", { class: "btn", href: downloadHref(snap.id, path, "zip"), download: "", id: "download-zip" }, icon("download"), h("span", null, "Zip"))),
    guardDownload(h("a", { class: "btn", href: downloadHref(snap.id, path), download: "", id: "download-folder" }, icon("download"), h("span", null, path ? "Download folder" : "Download all"))),
    button(path ? "Restore this folder" : "Restore", () => restoreDialog(snap, panel, path), { variant: "primary", icon: "restore", mutating: true, id: "restore-here" })));
  main.append(panel.el);

  // Breadcrumbs: the source's name is the root.
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Path" });
  const parts = path ? path.split("/") : [];
  const rootLabel = [icon("folder"), snap.source_name];
  crumbs.append(parts.length ? h("a", { href: browseHref(snap.id) }, rootLabel) : h("span", { "aria-current": "page" }, rootLabel));
  parts.forEach((p, i) => {
    crumbs.append(icon("chevron"));
    const sub = parts.slice(0, i + 1).join("/");
    crumbs.append(i === parts.length - 1 ? h("span", { "aria-current": "page" }, p) : h("a", { href: browseHref(snap.id, sub) }, p));
  });
  const body = h("div", null, loading());
  main.append(h("section", { class: "card", "aria-label": "Files" }, crumbs, body));

  function row(e) {
    const full = join(path, e.name);
    const nameEl = e.type === "dir"
      ? h("a", { class: "entry-name entry-dir", href: browseHref(snap.id, full) }, icon("folder"), e.name)
      : h("span", { class: "entry-name" }, icon(e.type === "symlink" ? "link" : "file"), e.name, e.type === "symlink" ? h("span", { class: "muted" }, " (link)") : null);
    return h("tr", { dataset: { entry: e.name, type: e.type } },
      td(nameEl),
      td(e.type === "file" ? fmt.bytes(e.size) : "—", "num", { title: e.type === "file" ? `${fmt.number(e.size)} bytes` : undefined }),
      td(fmt.dateTime(e.mtime), "time", { title: e.mtime }),
      td(h("code", { class: "muted" }, `${e.type === "dir" ? "d" : e.type === "symlink" ? "l" : "-"}${fmt.mode(e.mode)}`), "nowrap"),
      td(guardDownload(h("a", {
        class: "btn btn-sm btn-ghost", href: downloadHref(snap.id, full), download: "",
        title: e.type === "dir" ? "Download this folder (tar)" : "Download this file (tar)",
        "aria-label": `Download ${e.name}`, dataset: { action: "download" },
      }, icon("download"), h("span", null, "Download"))), "actions"));
  }

  async function load(explicit = false) {
    if (explicit) ctx.busy();
    let page;
    try {
      page = await get(`/api/backups/${seg(snap.id)}/tree`, { path, limit: PAGE_SIZE, offset }, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      clear(body).append(emptyState("alert", e.status === 404 ? "This path is not in the snapshot" : "The folder could not be read", e.message,
        h("a", { class: "btn", href: browseHref(snap.id) }, "Go to the snapshot's root")));
      ctx.ready();
      return;
    }
    clear(body);
    if (!page.items.length) {
      body.append(emptyState("folder", "This folder is empty", path ? "Nothing was stored under this folder." : "The snapshot holds no files."));
    } else {
      const items = [...page.items].sort((a, b) => (a.type === "dir") === (b.type === "dir") ? a.name.localeCompare(b.name, undefined, { numeric: true }) : a.type === "dir" ? -1 : 1);
      body.append(table([["Name"], ["Size", "num"], ["Modified"], ["Mode"], ["", "actions"]], items.map(row), { label: "Folder contents" }));
      if (page.total > PAGE_SIZE) {
        body.append(pager({ offset, limit: PAGE_SIZE, total: page.total, count: page.items.length, onPage: (o) => { offset = o; load(true); } }));
      }
    }
    ctx.ready();
  }

  await load(true);
}
