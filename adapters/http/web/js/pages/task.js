// One job: what it is, its progress or outcome, and its log, followed live while the
// job runs (GET /api/jobs/{id}/log with `after` = the last line read).

import { get, seg } from "../api.js";
import { h, clear, icon, badge, pageHeader, card } from "../dom.js";
import { jobCard, updateJobCard, watchJob, cancelRule, jobTitle, FINAL, STATE_TONE } from "../jobs.js";
import { jobDuration, outcome } from "./tasks.js";
import * as fmt from "../format.js";

const FOLLOW_EVERY = 1500;
const MAX_BACKOFF = 30_000;
const LEVEL_LABEL = { info: "info", warning: "warning", error: "error" };

export async function render(ctx) {
  const main = ctx.main;
  const id = ctx.route.id;
  const job = await get(`/api/jobs/${seg(id)}`, null, { signal: ctx.signal });
  const title = h("h1", null, jobTitle(job));
  const stateBadge = h("span", { id: "task-state" }, badge(job.state, STATE_TONE[job.state] || "neutral"));
  main.append(h("div", { class: "page-header" },
    h("div", null, h("p", { class: "crumbs-line" }, h("a", { href: "#/tasks" }, "Tasks"), " / ", h("code", null, fmt.shortId(job.id))), title),
    h("div", { class: "page-actions" }, stateBadge)));

  const facts = h("dl", { class: "facts", id: "task-facts" });
  const fillFacts = (j) => {
    clear(facts).append(
      fact("Job id", h("code", null, j.id)),
      fact("Requested by", j.requested_by),
      fact("Created", fmt.dateTime(j.created_at, true)),
      fact("Started", fmt.dateTime(j.started_at, true)),
      fact("Finished", fmt.dateTime(j.finished_at, true)),
      fact("Duration", jobDuration(j)),
      fact("Outcome", outcome(j)));
    clear(stateBadge).append(badge(j.state, STATE_TONE[j.state] || "neutral"));
  };
  fillFacts(job);
  const progress = jobCard(job, { cancel: cancelRule(ctx)(job), logLink: false });
  main.append(card("Details", [facts, progress]));

  const log = h("ol", { id: "job-log", class: "job-log", role: "log", "aria-live": "polite", "aria-label": "Job log", dataset: { complete: "false" } });
  const status = h("p", { class: "muted", id: "job-log-status", role: "status" }, "Reading the log…");
  main.append(card("Log", [status, log]));

  if (!FINAL.has(job.state)) {
    watchJob(ctx, job.id, {
      interval: FOLLOW_EVERY,
      onUpdate: (j) => { updateJobCard(progress, j); fillFacts(j); },
    });
  }

  let after = 0;
  let failures = 0;
  let first = true;
  const follow = async () => {
    if (ctx.left) return;
    let page;
    try {
      page = await get(`/api/jobs/${seg(job.id)}/log`, { after, limit: 1000 }, { signal: ctx.signal });
    } catch (e) {
      if (e.name === "AbortError" || ctx.left || e.status === 401) return;
      failures += 1;
      status.textContent = `The log could not be read (${e.message}); trying again.`;
      ctx.timeout(follow, Math.min(MAX_BACKOFF, FOLLOW_EVERY * 2 ** Math.min(failures, 10)));
      if (first) { first = false; ctx.ready(); }
      return;
    }
    failures = 0;
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    for (const line of page.lines) log.append(logLine(line));
    after = page.next_after;
    if (page.complete) {
      log.dataset.complete = "true";
      status.textContent = log.childElementCount
        ? `${log.childElementCount} lines · the job has ended.`
        : "This job wrote no log (it ran before job logs were kept, or never started).";
    } else {
      status.textContent = `${log.childElementCount} lines so far · following the job live…`;
      ctx.timeout(follow, page.lines.length >= 1000 ? 0 : FOLLOW_EVERY);
    }
    if (!first && atBottom && page.lines.length) log.lastElementChild.scrollIntoView({ block: "nearest" });
    if (first) { first = false; ctx.ready(); }
  };
  return follow();
}

function fact(label, value) {
  return h("div", { class: "fact" }, h("dt", null, label), h("dd", null, value ?? "—"));
}

function logLine(line) {
  const level = LEVEL_LABEL[line.level] || line.level;
  return h("li", { class: `log-line log-${level}`, dataset: { seq: String(line.seq), level } },
    h("time", { datetime: line.at, class: "log-time" }, fmt.dateTime(line.at, true)),
    // The level is a word, not only a colour.
    line.level === "info" ? null : h("span", { class: `log-level log-level-${level}` }, level === "error" ? icon("alert") : null, level),
    h("span", { class: "log-message" }, line.message));
}
