// The Jobs screen: every job, newest first, with live state and progress (the app polls).
import { h } from "../dom.js";
import * as format from "../format.js";

export function jobsView(state) {
  const jobs = state.jobs;
  return [
    {
      id: "jobs-title", key: 1,
      render: () => h("div", { className: "page-head" },
        h("h1", { id: "page-title", tabindex: "-1" }, "Jobs"),
        h("a", { className: "button", href: "#/upload" }, "New upload")),
    },
    { id: "jobs-error", key: jobs.error, render: () => jobs.error
      ? h("div", { className: "notice error", role: "alert" }, jobs.error) : null },
    { id: "jobs-table", key: [jobs.loaded, Boolean(jobs.error), jobs.list.map(rowKey)], render: () => jobsTable(jobs) },
  ];
}

function rowKey(job) {
  return [job.id, job.state, Math.round((job.progress || 0) * 100), job.summary?.islet_count, job.error];
}

export function newestFirst(jobs) {
  return [...jobs].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
}

function jobsTable(jobs) {
  if (!jobs.loaded) return h("p", { role: "status" }, "Loading jobs…");
  if (!jobs.list.length && jobs.error) return null; // unknown, not empty: the error says why
  if (!jobs.list.length) {
    return h("div", { className: "panel" }, h("p", {}, "No jobs yet. ", h("a", { href: "#/upload" }, "Upload images"),
      " to start one."));
  }
  return h("div", { className: "panel table-wrap" },
    h("table", { id: "jobs-table" },
      h("caption", {}, `${jobs.list.length} job${jobs.list.length === 1 ? "" : "s"}, newest first`),
      h("thead", {}, h("tr", {},
        ["Submitted", "Images", "Model", "State", "Progress", "Islets", "IEQ"].map((label, index) =>
          h("th", { scope: "col", className: index < 4 ? "text" : null }, label)))),
      h("tbody", {}, newestFirst(jobs.list).map(jobRow))));
}

function jobRow(job) {
  const names = job.file_names || [];
  const progress = job.state === "done" ? 1 : job.progress || 0;
  return h("tr", { dataset: { jobId: job.id, state: job.state } },
    // The submission time is the link to the job: the first thing read in a row, and a big target.
    h("td", { className: "text" }, h("a", {
      href: `#/jobs/${job.id}`, dataset: { focusKey: `open-${job.id}` },
      "aria-label": `Open job ${format.shortId(job.id)} submitted ${format.time(job.created_at)}, ${job.state}`,
    }, format.time(job.created_at))),
    h("td", { className: "text", title: names.join(", ") },
      names.length ? `${names[0]}${names.length > 1 ? ` +${names.length - 1}` : ""}` : `${job.image_count || 0} images`,
      job.training ? h("span", { className: "hint" }, " · training") : null),
    h("td", { className: "text" }, job.model || "–"),
    h("td", { className: "text" }, h("span", { className: `state state-${job.state}` }, job.state),
      job.state === "failed" && job.error ? h("div", { className: "hint wrap" }, job.error) : null),
    h("td", { className: "progress-cell" },
      h("progress", { max: "1", value: String(progress), "aria-label": `Progress of job ${format.shortId(job.id)}` }),
      ` ${Math.round(progress * 100)} %`),
    h("td", {}, format.integer(job.summary?.islet_count)),
    h("td", {}, format.number(job.summary?.ieq_ricordi, 1)));
}
