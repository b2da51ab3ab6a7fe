// Overview: the figures of GET /api/dashboard, the quota, active alerts and running jobs,
// and the replicas of GET /api/replicas (last copy, lag); the charts of
// GET /api/dashboard/charts (stored bytes with the quota and a projection, backups per
// day by outcome), fetched again every 15 s and whenever the running jobs change.
// Polls every 1.5 s while a job runs, every 15 s otherwise; stops when the page is left.

import { get, post, seg } from "../api.js";
import { h, clear, icon, badge, button, card, pageHeader, emptyState, loading, table, td, bar, toast, toastError } from "../dom.js";
import { jobCard, updateJobCard, cancelRule, markGone, FINAL } from "../jobs.js";
import { drawStorage, drawBackupsPerDay } from "../charts.js";
import * as fmt from "../format.js";

const FAST = 1500;
const SLOW = 15000;

function stat(label, iconName, value, sub, tone, small) {
  return h("div", { class: ["stat", tone ? `tone-${tone}` : ""] },
    h("div", { class: "stat-label" }, icon(iconName), label),
    h("div", { class: ["stat-value", small ? "small" : ""] }, value),
    sub ? h("div", { class: "stat-sub" }, sub) : null);
}

function statsOf(d) {
  const byStatus = Object.fromEntries((d.backups.by_status || []).map((s) => [s.status, s.count]));
  const statusLine = Object.keys(byStatus).length
    ? Object.entries(byStatus).map(([s, n]) => `${fmt.number(n)} ${s}`).join(" · ")
    : "No snapshots yet";
  const disk = d.disk;
  const sched = d.scheduler;
  const ret = d.retention;
  return h("div", { class: "stats", id: "overview-stats" },
    stat("Total backups", "backups", fmt.number(d.total_backups), statusLine),
    stat("Storage used", "database", fmt.bytes(d.storage.stored_bytes),
      d.dedup_ratio ? `${fmt.bytes(d.backups.logical_bytes)} logical · ${d.dedup_ratio.toFixed(1)}× dedup` : `${fmt.bytes(d.backups.logical_bytes)} logical`),
    disk
      ? stat("Free disk", "disk", fmt.bytes(disk.free_bytes), `of ${fmt.bytes(disk.total_bytes)} on ${disk.mount_point}${disk.below_reserve ? " · backups refused" : disk.low ? " · low" : ""}`,
        disk.below_reserve ? "danger" : disk.low ? "warn" : null)
      : stat("Free disk", "disk", "—", "Free space cannot be read"),
    stat("Last backup", "clock", d.last_backup_at ? fmt.relative(d.last_backup_at) : "Never", d.last_backup_at ? fmt.dateTime(d.last_backup_at) : "No backup has run yet", null, true),
    stat("Scheduler", "calendar", sched.enabled ? "Running" : "Off",
      sched.enabled ? (sched.next_backup_at ? `Next backup ${fmt.relative(sched.next_backup_at)} (${fmt.dateTime(sched.next_backup_at)})` : "No backup scheduled") : "Scheduled backups do not run",
      sched.enabled ? "ok" : "warn", true),
    stat("Retention", "restore", ret.enabled ? "Enabled" : "Off",
      `${fmt.retention(ret.defaults)}${ret.overridden_sources ? ` · ${ret.overridden_sources} source(s) custom` : ""}`,
      ret.enabled ? null : "warn", true));
}

function quotaOf(d, ctx) {
  const s = d.storage;
  if (!s.quota_bytes) {
    return card("Storage quota", h("div", { class: "quota", id: "quota" },
      h("div", { class: "quota-head" }, h("span", { class: "quota-figure" }, fmt.bytes(s.stored_bytes)), badge("No quota", "neutral")),
      h("p", { class: "muted" }, "No storage quota is set: the repository may grow until the disk is full."),
      ctx.can("manage_system") ? h("a", { href: "#/settings" }, "Set a quota in Settings") : null));
  }
  const pct = s.quota_used_percent ?? (100 * s.stored_bytes) / s.quota_bytes;
  const tone = s.quota_state === "exceeded" ? "danger" : s.quota_state === "warning" ? "warn" : "ok";
  const meter = bar(pct, tone, `Storage: ${pct.toFixed(1)}% of the quota`);
  if (s.warning_bytes && s.warning_bytes < s.quota_bytes) {
    const marker = h("span", { class: "bar-marker", title: `Warning at ${fmt.bytes(s.warning_bytes)}` });
    marker.style.left = `${(100 * s.warning_bytes) / s.quota_bytes}%`;
    meter.append(marker);
  }
  const label = { ok: ["Within quota", "ok"], warning: ["Near quota", "warn"], exceeded: ["Quota exceeded", "danger"] }[s.quota_state] || [s.quota_state, "neutral"];
  const el = h("div", { class: "quota", id: "quota", dataset: { state: s.quota_state } },
    h("div", { class: "quota-head" },
      h("span", null, h("span", { class: "quota-figure" }, fmt.bytes(s.stored_bytes)), h("span", { class: "muted" }, ` of ${fmt.bytes(s.quota_bytes)} · ${pct.toFixed(1)}%`)),
      badge(label[0], label[1])),
    meter,
    h("div", { class: "quota-legend" },
      h("span", null, s.warning_bytes ? `Warning at ${fmt.bytes(s.warning_bytes)}` : "No warning threshold"),
      h("span", null, `Quota ${fmt.bytes(s.quota_bytes)}`)));
  return card("Storage quota", el);
}

function alertsOf(d, ctx, reload) {
  const a = d.alerts;
  const counts = [];
  if (a.critical) counts.push(badge(`${a.critical} critical`, "danger"));
  if (a.warning) counts.push(badge(`${a.warning} warning`, "warn"));
  if (a.info) counts.push(badge(`${a.info} info`, "info"));
  let content;
  if (!a.latest.length) {
    content = emptyState("check", "No active alerts", "Backups, storage and the repository look healthy.");
  } else {
    content = h("ul", { class: "alert-list" }, a.latest.map((al) => h("li", { class: `alert-item sev-${al.severity}`, dataset: { alertId: String(al.id) } },
      h("span", { class: "sev", "aria-hidden": "true" }),
      h("div", { class: "alert-text" },
        h("div", null, al.message),
        h("div", { class: "alert-meta" }, `${al.severity} · ${al.kind.replaceAll("_", " ")} · ${fmt.relative(al.created_at)}`)),
      ctx.can("manage_system")
        ? button("Acknowledge", async (ev) => {
          ev.currentTarget.disabled = true;
          try {
            await post(`/api/alerts/${seg(al.id)}/ack`);
            toast("Alert acknowledged.", "success");
            reload();
          } catch (e) {
            toastError(e);
            ev.currentTarget.disabled = false;
          }
        }, { small: true, variant: "ghost", mutating: true, dataset: { action: "ack" } })
        : null)));
  }
  return card("Active alerts", content, { flush: true, actions: counts });
}

function sourcesOf(d, ctx) {
  if (!d.sources.length) {
    return card("Sources", emptyState("sources", "No sources yet", "Add a directory to back up and Coffer takes it from there.",
      ctx.can("manage_system") ? h("a", { class: "btn btn-primary", href: "#/sources" }, "Add a source") : null));
  }
  const rows = d.sources.map((s) => {
    const lb = s.last_backup;
    return h("tr", { dataset: { overviewSource: s.name } },
      td(h("div", null, h("strong", null, s.name), h("span", { class: "sub path" }, s.path))),
      td(lb ? h("div", null, badge(lb.status, lb.status === "ok" ? "ok" : "warn"), " ", h("span", { title: fmt.dateTime(lb.created_at) }, fmt.relative(lb.created_at)), h("span", { class: "sub" }, `${fmt.bytes(lb.size)} · ${fmt.duration(lb.duration_ms)}`)) : h("span", { class: "muted" }, "Never backed up")),
      td(s.schedule ? h("code", null, s.schedule) : h("span", { class: "muted" }, "Manual")),
      td(!s.schedule ? "—" : !s.enabled ? badge("Paused", "warn") : s.next_run_at ? h("span", { title: fmt.dateTime(s.next_run_at) }, fmt.relative(s.next_run_at)) : "planning…", "time"),
      td(h("span", { class: s.retention_overridden ? "" : "muted" }, `${s.retention_overridden ? "" : "Default: "}${fmt.retention(s.retention)}`)));
  });
  return card("Sources", table(["Source", "Last backup", "Schedule", "Next run", "Retention"], rows, { label: "Sources" }), { flush: true });
}

function replicasOf(list, ctx, reload) {
  if (!list.length) {
    return card("Replicas", emptyState("database", "No replicas", "Off-site copies of the repository (another disk, a NAS mount) are kept in step by copy jobs.",
      ctx.can("manage_system") ? h("code", null, "coffer replicas add NAME --path DIR") : null));
  }
  const rows = list.map((r) => {
    const failedLast = r.last_failure_at && (!r.last_success_at || r.last_failure_at > r.last_success_at);
    return h("tr", { dataset: { overviewReplica: r.name } },
      td(h("div", null, h("strong", null, r.name), h("span", { class: "sub" }, `${r.backend}${r.append_only ? " · append-only" : ""}${r.from_config ? " · from the configuration" : ""}`))),
      td(r.last_success_at
        ? h("span", { title: fmt.dateTime(r.last_success_at) }, fmt.relative(r.last_success_at))
        : h("span", { class: "muted" }, "Never copied")),
      td(failedLast
        ? h("div", null, badge("Failed", "danger"), h("span", { class: "sub" }, r.last_error || ""))
        : r.last_success_at ? badge("OK", "ok") : h("span", { class: "muted" }, "—")),
      td(h("div", null,
        r.lagging ? badge(`${fmt.number(r.lag_snapshots)} behind`, "warn") : h("span", null, `${fmt.number(r.lag_snapshots)} snapshot(s)`),
        r.lag_oldest_at ? h("span", { class: "sub", title: fmt.dateTime(r.lag_oldest_at) }, `oldest ${fmt.relative(r.lag_oldest_at)}`) : null)),
      td(r.schedule ? h("div", null, h("code", null, r.schedule), r.next_run_at ? h("span", { class: "sub", title: fmt.dateTime(r.next_run_at) }, fmt.relative(r.next_run_at)) : null) : h("span", { class: "muted" }, "Manual")),
      td(ctx.can("backup")
        ? button("Copy now", async (ev) => {
          ev.currentTarget.disabled = true;
          try {
            await post(`/api/replicas/${seg(r.name)}/sync`);
            toast(`Copy to ${r.name} started.`, "success");
            reload();
          } catch (e) {
            toastError(e);
            ev.currentTarget.disabled = false;
          }
        }, { small: true, variant: "ghost", mutating: true, dataset: { action: "sync" } })
        : null));
  });
  return card("Replicas", table(["Replica", "Last copy", "State", "Not yet copied", "Schedule", ""], rows, { label: "Replicas" }), { flush: true });
}

export async function render(ctx) {
  const main = ctx.main;
  const refresh = button("Refresh", () => load(true), { icon: "refresh", variant: "ghost", small: true, dataset: { action: "refresh" } });
  const mayCancel = cancelRule(ctx);
  const generated = h("span", { class: "muted" });
  main.append(pageHeader("Overview", generated, refresh));
  const banner = h("div");
  const stats = h("div", null, loading());
  const quota = h("div");
  const alerts = h("div");
  const jobsBody = h("div", { class: "job-list", id: "running-jobs" });
  const jobsEmpty = emptyState("clock", "No jobs running", "Backups run on their schedule, or start one from Sources.");
  jobsEmpty.classList.add("compact");
  const jobsCard = card("Running jobs", [jobsBody, jobsEmpty]);
  const sources = h("div");
  const replicas = h("div", { id: "overview-replicas" });
  const storageChart = h("div");
  const perDayChart = h("div");
  const charts = h("div", { class: "grid-2 section-gap", id: "overview-charts" },
    card("Storage over time", storageChart),
    card("Backups per day", perDayChart));
  main.append(banner, stats, h("div", { class: "grid-2" }, h("div", { class: "stack" }, quota, jobsCard), alerts), charts, h("div", { class: "section-gap" }, sources), h("div", { class: "section-gap" }, replicas));

  const cards = new Map();
  let alertSig = "";
  let timer = null;
  let chartsAt = 0;
  let chartsSig = null;

  // The charts change when a job ends: drawn again when the running jobs differ from the
  // last drawing's, and every 15 s.
  async function loadCharts(d, explicit) {
    const sig = d.running_jobs.map((j) => j.id).join(",");
    if (!explicit && sig === chartsSig && Date.now() - chartsAt < SLOW) return;
    try {
      const c = await get("/api/dashboard/charts", null, { signal: ctx.signal });
      drawStorage(storageChart, c.storage);
      drawBackupsPerDay(perDayChart, c.backups_per_day);
      chartsSig = sig;
      chartsAt = Date.now();
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      toastError(e);
    }
  }

  async function settle(id, el) {
    try {
      const job = await get(`/api/jobs/${seg(id)}`, null, { signal: ctx.signal });
      updateJobCard(el, job);
    } catch (e) {
      // Gone from the server (or from this user's view): say so; otherwise it ended and
      // the next poll settles it.
      if (e.status === 404 || e.status === 403) markGone(el, e);
    }
  }

  function drawJobs(running) {
    const seen = new Set();
    for (const job of running) {
      seen.add(job.id);
      const el = cards.get(job.id);
      if (el) updateJobCard(el, job);
      else {
        const card = jobCard(job, { cancel: mayCancel(job), onDismiss: () => { cards.delete(job.id); jobsEmpty.hidden = cards.size > 0; } });
        cards.set(job.id, card);
        jobsBody.append(card);
      }
    }
    for (const [id, el] of cards) {
      if (!seen.has(id) && !FINAL.has(el.dataset.jobState)) settle(id, el);
    }
    jobsEmpty.hidden = cards.size > 0;
  }

  async function load(explicit = false) {
    if (timer) ctx.clearTimeout(timer);
    if (explicit) ctx.busy();
    let d;
    try {
      d = await get("/api/dashboard", null, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      if (!cards.size && stats.querySelector(".loading")) throw e;
      toastError(e);
      timer = ctx.timeout(() => load(), SLOW);
      return;
    }
    clear(generated).append(`Updated ${fmt.dateTime(d.generated_at, true)}`);
    clear(banner);
    if (!d.key_exported) {
      banner.append(h("div", { class: "banner banner-danger", role: "alert" }, icon("key"),
        h("div", { class: "banner-body" }, h("strong", null, "The encryption key has not been exported."),
          h("span", null, "Losing the key loses every backup. Export it and keep the copy somewhere safe, away from this server."),
          ctx.can("manage_system") ? h("a", { href: "#/settings" }, "How to export the key") : null)));
    }
    clear(stats).append(statsOf(d));
    clear(quota).append(quotaOf(d, ctx));
    const sig = d.alerts.latest.map((a) => a.id).join(",");
    if (sig !== alertSig || !alerts.firstChild) {
      alertSig = sig;
      clear(alerts).append(alertsOf(d, ctx, () => load(true)));
    }
    clear(sources).append(sourcesOf(d, ctx));
    try {
      const list = await get("/api/replicas", null, { signal: ctx.signal });
      clear(replicas).append(replicasOf(list, ctx, () => load(true)));
    } catch (e) {
      if (e.name === "AbortError" || ctx.left) return;
      clear(replicas);
    }
    drawJobs(d.running_jobs);
    await loadCharts(d, explicit);
    if (ctx.left) return;
    ctx.ready();
    timer = ctx.timeout(() => load(), d.running_jobs.length ? FAST : SLOW);
  }

  await load(true);
}
