// The Result screen: overlay with numbered contours, summary, size-class histogram, downloads,
// and the sortable per-islet table of the image shown.
import { h } from "../dom.js";
import * as format from "../format.js";
import { downloadUrl, overlayUrl } from "../api.js";

export const SIZE_CLASSES = ["50-100", "100-150", "150-200", "200-250", "250-300", "300-350", ">=350"];

// Table columns: key in the islet record, heading, digits shown.
export const COLUMNS = [
  ["number", "Islet", 0],
  ["area_um2", "Area (µm²)", 0],
  ["equivalent_diameter_um", "Eq. diameter (µm)", 1],
  ["major_axis_um", "Major axis (µm)", 1],
  ["minor_axis_um", "Minor axis (µm)", 1],
  ["circularity", "Circularity", 2],
  ["ieq_ricordi", "IEQ Ricordi", 2],
  ["ieq_sphere", "IEQ sphere", 2],
  ["ieq_ellipsoid", "IEQ ellipsoid", 2],
];

const DOWNLOADS = [
  ["islets.csv", "CSV", "Islet table as CSV"],
  ["islets.xlsx", "XLSX", "Islet table and summary as an Excel workbook"],
  ["report.pdf", "PDF", "Printable report with overlay, summary and table"],
  ["archive.zip", "ZIP", "All results of this job in one archive"],
];

export function resultView(state, actions) {
  const result = state.result;
  const job = result.job;
  const data = result.data;
  return [
    {
      id: "result-title",
      key: [state.route.jobId, job && [job.state, Math.round((job.progress || 0) * 100), job.error], result.error],
      render: () => resultHeader(state.route.jobId, job, result.error),
    },
    {
      id: "result-body",
      key: [Boolean(data), job?.id, result.image, result.selected],
      render: () => (data ? resultBody(job, data, result, actions) : null),
    },
    {
      id: "result-table",
      key: [Boolean(data), job?.id, result.image, result.sort, result.selected],
      render: () => (data ? isletTable(data.images[result.image] || { islets: [] }, result, actions) : null),
    },
  ];
}

function resultHeader(jobId, job, error) {
  const title = h("h1", { id: "page-title", tabindex: "-1" }, `Job ${format.shortId(jobId)}`);
  if (error) return h("div", {}, title, h("div", { className: "notice error", role: "alert" }, error));
  if (!job) return h("div", {}, title, h("p", { role: "status" }, "Loading the job…"));
  const names = job.file_names || [];
  const meta = h("p", { className: "meta" },
    `${names.join(", ") || `${job.image_count} images`} · model ${job.model} · ${job.pixel_size_um} µm/px · `,
    `submitted ${format.time(job.created_at)}`, job.training ? " · kept for training" : "");
  if (job.state === "failed") {
    return h("div", {}, title, meta, h("div", { className: "notice error", role: "alert" },
      `The analysis failed: ${job.error || "no reason was recorded"}`));
  }
  if (job.state !== "done") {
    const progress = job.progress || 0;
    return h("div", {}, title, meta, h("div", { className: "notice", role: "status" },
      h("label", { for: "job-progress" },
        job.state === "queued" ? "Waiting in the queue…" : `Analysing… ${Math.round(progress * 100)} %`),
      h("progress", { id: "job-progress", max: "1", value: String(progress) })));
  }
  return h("div", {}, title, meta);
}

export function jobSummary(data) {
  const images = (data.images || []).map((image) => image.summary || {});
  const summary = { ...(data.summary || {}) };
  for (const key of ["islet_count", "ieq_ricordi", "ieq_sphere", "ieq_ellipsoid"]) {
    if (summary[key] === undefined) summary[key] = images.reduce((total, image) => total + (image[key] || 0), 0);
  }
  for (const key of ["purity", "fragmentation"]) {
    if (summary[key] === undefined) {
      const values = images.map((image) => image[key]).filter((value) => value !== undefined && value !== null);
      summary[key] = values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    }
  }
  if (!summary.size_classes) {
    summary.size_classes = {};
    for (const image of images) {
      for (const [name, count] of Object.entries(image.size_classes || {})) {
        summary.size_classes[name] = (summary.size_classes[name] || 0) + count;
      }
    }
  }
  return summary;
}

function resultBody(job, data, result, actions) {
  const images = data.images || [];
  const image = images[result.image] || { islets: [] };
  const summary = jobSummary(data);
  return h("div", { className: "result-grid" },
    h("section", { className: "panel", "aria-labelledby": "overlay-heading" },
      h("h2", { id: "overlay-heading" }, images.length > 1 ? `Image ${result.image + 1} of ${images.length}` : "Islets found"),
      images.length > 1 ? h("div", { className: "image-tabs", role: "tablist", "aria-label": "Images of this job" },
        images.map((_, index) => h("button", {
          type: "button", role: "tab", "aria-selected": String(index === result.image),
          dataset: { focusKey: `image-${index}` }, onClick: () => actions.showImage(index),
        }, (job.file_names || [])[index] || `Image ${index + 1}`))) : null,
      figure(job, image, result),
      qualityNotes(image)),
    h("section", { className: "panel stack", "aria-labelledby": "summary-heading" },
      h("h2", { id: "summary-heading" }, images.length > 1 ? "Summary (all images)" : "Summary"),
      h("dl", { className: "summary-list", id: "summary" },
        term("Islets", format.integer(summary.islet_count), "islet-count"),
        term("IEQ (Ricordi classes)", format.number(summary.ieq_ricordi), "ieq-ricordi"),
        term("IEQ (sphere)", format.number(summary.ieq_sphere), "ieq-sphere"),
        term("IEQ (ellipsoid)", format.number(summary.ieq_ellipsoid), "ieq-ellipsoid"),
        term("Purity", format.percent(summary.purity), "purity"),
        term("Fragmentation", format.percent(summary.fragmentation), "fragmentation")),
      histogram(summary.size_classes || {}),
      h("div", {},
        h("h3", { id: "downloads-heading" }, "Downloads"),
        h("div", { className: "downloads", role: "group", "aria-labelledby": "downloads-heading" },
          DOWNLOADS.map(([name, label, description]) => h("a", {
            className: "button", href: downloadUrl(job.id, name), download: "", title: description,
            "aria-label": `${label}: ${description}`,
          }, label))))));
}

// The image's quality flags (result JSON "quality_flags"): each a sentence saying what to check
// or redo before the count and IEQ of this image are trusted.
export function qualityNotes(image) {
  const flags = image.quality_flags || [];
  if (!flags.length) return null;
  return h("div", { className: "notice warn", id: "quality-flags", role: "note", "aria-labelledby": "quality-heading" },
    h("h3", { id: "quality-heading" }, flags.length === 1 ? "Check this image" : `Check this image (${flags.length} warnings)`),
    h("ul", { className: "errors" }, flags.map((flag) => h("li", { dataset: { flag: flag.code } }, flag.message))));
}

function term(label, value, id) {
  return [h("dt", {}, label), h("dd", { dataset: { summary: id } }, value)];
}

function figure(job, image, result) {
  const svg = h("svg:svg", { "aria-hidden": "true", preserveAspectRatio: "none" });
  const selected = (image.islets || []).find((islet) => islet.number === result.selected);
  if (selected && selected.contour_px?.length) {
    svg.append(h("svg:polygon", { points: selected.contour_px.map(([x, y]) => `${x},${y}`).join(" ") }));
  }
  const count = (image.islets || []).length;
  const img = h("img", {
    src: overlayUrl(job.id, result.image), id: "overlay",
    alt: `The image with the ${count} islet${count === 1 ? "" : "s"} found outlined and numbered as in the table.`,
  });
  // The highlight shares the image's pixel coordinates; the viewBox is known once it loads.
  const fit = () => img.naturalWidth && svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  img.addEventListener("load", fit);
  if (img.complete) fit();
  return h("figure", { className: "figure" }, h("div", { className: "frame" }, img, svg),
    h("figcaption", {}, selected ? `Islet ${selected.number} is highlighted.` :
      "Numbers match the table; choose an islet number in the table to highlight it."));
}

function histogram(classes) {
  const names = [...SIZE_CLASSES,
    ...Object.keys(classes).filter((name) => !SIZE_CLASSES.includes(name))];
  const largest = Math.max(1, ...names.map((name) => classes[name] || 0));
  return h("figure", { className: "histogram", "aria-labelledby": "histogram-heading" },
    h("h3", { id: "histogram-heading" }, "Islets per diameter class (µm)"),
    names.map((name) => h("div", { className: "bar-row" },
      h("span", {}, name.replace(">=", "≥ ")),
      h("div", { className: "bar", style: { width: `${((classes[name] || 0) / largest) * 100}%` }, "aria-hidden": "true" }),
      h("span", { className: "count", dataset: { sizeClass: name } }, String(classes[name] || 0)))));
}

export function sortIslets(islets, sort) {
  const factor = sort.direction === "ascending" ? 1 : -1;
  return [...islets].sort((a, b) => {
    const left = a[sort.key] ?? -Infinity;
    const right = b[sort.key] ?? -Infinity;
    return (left < right ? -1 : left > right ? 1 : a.number - b.number) * factor;
  });
}

function isletTable(image, result, actions) {
  const islets = image.islets || [];
  if (!islets.length) return h("div", { className: "panel" }, h("p", {}, "No islets of at least 50 µm were found in this image."));
  const rows = sortIslets(islets, result.sort);
  return h("section", { className: "panel", "aria-labelledby": "islets-heading" },
    h("h2", { id: "islets-heading" }, `Islets (${islets.length})`),
    h("div", { className: "scroll-table table-wrap" },
      h("table", { id: "islets-table" },
        h("caption", { className: "visually-hidden" }, "Per-islet measurements; column headings sort the table."),
        h("thead", {}, h("tr", {}, COLUMNS.map(([key, label]) => h("th", {
          scope: "col",
          "aria-sort": result.sort.key === key ? result.sort.direction : "none",
        }, h("button", {
          type: "button", className: "sort", dataset: { focusKey: `sort-${key}`, sortKey: key },
          onClick: () => actions.sortBy(key),
        }, label))))),
        h("tbody", {}, rows.map((islet) => h("tr", {
          className: islet.number === result.selected ? "selected" : null, dataset: { islet: islet.number },
        }, COLUMNS.map(([key, , digits], index) => h("td", {}, index === 0
          ? h("button", {
            type: "button", className: "link", dataset: { focusKey: `islet-${islet.number}` },
            "aria-pressed": String(islet.number === result.selected),
            "aria-label": `Highlight islet ${islet.number} on the image`,
            onClick: () => actions.selectIslet(islet.number),
          }, String(islet.number))
          : format.number(islet[key], digits)))))))));
}
