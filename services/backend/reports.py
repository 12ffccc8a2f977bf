"""Reports built from finished jobs: per-job CSV/XLSX/PDF/ZIP, statistics across jobs, access statistics.

Pure functions only: they take job rows and result documents (the result JSON of
docs/architecture.md) and return bytes or plain dicts. Reading S3 and the database is the
caller's business (`services.backend.reports_api`), so everything here is testable without servers.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

import services.islets as islets
from services.common.previews import overlay_preview
from services.common.times import parse_utc

# Per-islet columns, in table order: (result key, column heading). One list for CSV, XLSX and PDF.
ISLET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image", "image"),
    ("file", "file"),
    ("number", "islet"),
    ("area_um2", "area_um2"),
    ("equivalent_diameter_um", "equivalent_diameter_um"),
    ("major_axis_um", "major_axis_um"),
    ("minor_axis_um", "minor_axis_um"),
    ("circularity", "circularity"),
    ("centroid_x_px", "centroid_x_px"),
    ("centroid_y_px", "centroid_y_px"),
    ("ieq_ricordi", "ieq_ricordi"),
    ("ieq_sphere", "ieq_sphere"),
    ("ieq_ellipsoid", "ieq_ellipsoid"),
)

# Summary lines shown in every report: (summary key, label).
SUMMARY_FIELDS: tuple[tuple[str, str], ...] = (
    ("islet_count", "Islet count"),
    ("ieq_ricordi", "IEQ (Ricordi classes)"),
    ("ieq_sphere", "IEQ (sphere)"),
    ("ieq_ellipsoid", "IEQ (ellipsoid)"),
    ("ieq_per_islet", "IEQ per islet"),
    ("purity", "Purity"),
    ("fragmentation", "Fragmentation"),
)

# Ricordi diameter classes in µm, in the order the reports list them.
SIZE_CLASSES: tuple[str, ...] = ("50-100", "100-150", "150-200", "200-250", "250-300", "300-350", ">=350")

PDF_MAX_OVERLAY_WIDTH = 170 * mm
PDF_MAX_OVERLAY_HEIGHT = 150 * mm
# Already-compressed files go into archives as they are.
COMPRESSED_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pdf", ".xlsx")


# --------------------------------------------------------------------------------------------
# Flattening the result document
# --------------------------------------------------------------------------------------------


def islet_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per islet over all images of a job, keyed by the `ISLET_COLUMNS` keys.

    Images are numbered from 1 (as the user sees them); islets keep the number drawn on the overlay.
    """
    rows: list[dict[str, Any]] = []
    for image_number, image in enumerate(result.get("images") or [], start=1):
        for islet in image.get("islets") or []:
            centroid = islet.get("centroid_px") or [None, None]
            row = {key: islet.get(key) for key, _ in ISLET_COLUMNS}
            row.update(image=image_number, file=image.get("name"), centroid_x_px=centroid[0],
                       centroid_y_px=centroid[1])
            rows.append(row)
    return rows


def job_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The job-wide summary: the result's own `summary` (what the shepherd stored), with any field
    it lacks taken from the one summary across images, `islets.summarise_images` (counts and IEQ
    add up; purity and fragmentation are area-weighted, 0.0 without tissue)."""
    summary = {key: value for key, value in (result.get("summary") or {}).items() if value is not None}
    images = result.get("images") or []
    complete = all(key in summary for key, _ in SUMMARY_FIELDS) and summary.get("size_classes")
    if complete or not images:
        return summary
    return {**islets.summarise_images(images), **summary}


def _format(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _job_lines(job: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The job's identifying lines for report headers."""
    files = job.get("file_names") or []
    return [
        ("Job", job.get("id")),
        ("State", job.get("state")),
        ("Submitted", _format_time(job.get("created_at"))),
        ("Finished", _format_time(job.get("finished_at"))),
        ("Model", job.get("model")),
        ("Pixel size (µm/px)", job.get("pixel_size_um")),
        ("Images", ", ".join(str(name) for name in files) if files else job.get("image_count")),
    ]


def _format_time(value: Any) -> str | None:
    """Times as `YYYY-MM-DD HH:MM:SS UTC` (job rows carry datetimes or, via the API, ISO text)."""
    parsed = parse_utc(value)
    if parsed is not None:
        return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value


# --------------------------------------------------------------------------------------------
# Per-job reports
# --------------------------------------------------------------------------------------------


def job_csv(job: Mapping[str, Any], result: Mapping[str, Any]) -> bytes:
    """The per-islet table of all images of a job as UTF-8 CSV with a header line."""
    del job  # the CSV is the bare table; the job's metadata lives in the XLSX/PDF summaries
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([heading for _, heading in ISLET_COLUMNS])
    for row in islet_rows(result):
        writer.writerow(["" if row[key] is None else row[key] for key, _ in ISLET_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def job_xlsx(job: Mapping[str, Any], result: Mapping[str, Any]) -> bytes:
    """An XLSX workbook: sheet "Summary" (job, summary, size classes) and sheet "Islets" (the table)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Summary"
    bold = Font(bold=True)
    for label, value in _job_lines(job):
        sheet.append([label, _cell(value)])
    sheet.append([])
    summary = job_summary(result)
    sheet.append(["Summary"])
    sheet.cell(sheet.max_row, 1).font = bold
    for key, label in SUMMARY_FIELDS:
        sheet.append([label, _cell(summary.get(key))])
    sheet.append([])
    sheet.append(["Diameter class (µm)", "Islets"])
    sheet.cell(sheet.max_row, 1).font = bold
    sheet.cell(sheet.max_row, 2).font = bold
    classes = summary.get("size_classes") or {}
    for name in _ordered_classes(classes):
        sheet.append([name, classes.get(name, 0)])
    sheet.column_dimensions["A"].width = 24
    sheet.column_dimensions["B"].width = 40

    islets = workbook.create_sheet("Islets")
    islets.append([heading for _, heading in ISLET_COLUMNS])
    for cell in islets[1]:
        cell.font = bold
    for row in islet_rows(result):
        islets.append([_cell(row[key]) for key, _ in ISLET_COLUMNS])
    for index in range(1, len(ISLET_COLUMNS) + 1):
        islets.column_dimensions[get_column_letter(index)].width = 16
    islets.freeze_panes = "A2"
    return _save_workbook(workbook)


def _ordered_classes(classes: Mapping[str, Any]) -> list[str]:
    known = [name for name in SIZE_CLASSES if name in classes] or list(SIZE_CLASSES)
    return known + sorted(name for name in classes if name not in SIZE_CLASSES)


def _cell(value: Any) -> Any:
    """A value openpyxl stores natively (numbers stay numbers; aware datetimes become text)."""
    if isinstance(value, datetime):
        return _format_time(value)
    if isinstance(value, list | tuple | dict):
        return str(value)
    return value


def _save_workbook(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def job_pdf(job: Mapping[str, Any], result: Mapping[str, Any], overlay_pngs: Iterable[bytes] = ()) -> bytes:
    """An A4 PDF: header with the job, each image's overlay, the summary and the per-islet table."""
    buffer = io.BytesIO()
    write_job_pdf(buffer, job, result, overlay_pngs)
    return buffer.getvalue()


def write_job_pdf(target: IO[bytes], job: Mapping[str, Any], result: Mapping[str, Any],
                  overlay_pngs: Iterable[bytes] = ()) -> None:
    """`job_pdf` into a file. Overlays are taken one at a time and kept only downscaled, so
    `overlay_pngs` may be a generator that reads each from storage when it is needed."""
    styles = getSampleStyleSheet()
    document = SimpleDocTemplate(
        target,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"IsletNet report, job {job.get('id')}",
        author="IsletNet",
    )
    story: list[Any] = [Paragraph(f"IsletNet report &mdash; job {_escape(job.get('id'))}", styles["Title"])]
    story.append(_key_value_table([(label, _format(value, 3)) for label, value in _job_lines(job)]))
    story.append(Spacer(1, 6 * mm))

    summary = job_summary(result)
    story.append(Paragraph("Summary", styles["Heading2"]))
    story.append(_key_value_table([(label, _format(summary.get(key))) for key, label in SUMMARY_FIELDS]))
    classes = summary.get("size_classes") or {}
    order = _ordered_classes(classes)
    story.append(Spacer(1, 3 * mm))
    class_table = Table([["Diameter class (µm)", *order], ["Islets", *[str(classes.get(n, 0)) for n in order]]])
    class_table.setStyle(_grid_style())
    story.append(class_table)
    story += quality_flag_paragraphs(result, styles)

    for number, png in enumerate(overlay_pngs, start=1):
        story.append(Spacer(1, 6 * mm))
        story.append(KeepTogether([Paragraph(f"Image {number}: islets found", styles["Heading2"]), _image(png)]))

    rows = islet_rows(result)
    story.append(Spacer(1, 6 * mm))
    story.append(Paragraph(f"Islets ({len(rows)})", styles["Heading2"]))
    headings = ["image", "islet", "area µm²", "d eq µm", "major µm", "minor µm", "circ.", "IEQ Ric.", "IEQ sph.",
                "IEQ ell."]
    keys = ["image", "number", "area_um2", "equivalent_diameter_um", "major_axis_um", "minor_axis_um", "circularity",
            "ieq_ricordi", "ieq_sphere", "ieq_ellipsoid"]
    data = [headings] + [[_format(row[key], 1 if "um" in key else 2) for key in keys] for row in rows]
    table = Table(data, repeatRows=1)
    table.setStyle(_grid_style(font_size=7.5))
    story.append(table)
    document.build(story)


def quality_flag_paragraphs(result: Mapping[str, Any], styles: Any) -> list[Any]:
    """The images' quality flags (result JSON "quality_flags") as a "Check these images" section:
    one line per flag, naming the image, with the sentence that says what to check or redo.
    Nothing when no image raised one."""
    lines = [
        f"<b>Image {number}</b> ({_escape(image.get('name') or '')}): {_escape(flag.get('message', ''))}"
        for number, image in enumerate(result.get("images") or [], start=1)
        for flag in image.get("quality_flags") or []
    ]
    if not lines:
        return []
    return [Spacer(1, 6 * mm), Paragraph("Check these images", styles["Heading2"])] + [
        Paragraph(line, styles["BodyText"]) for line in lines
    ]


def _escape(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _key_value_table(lines: list[tuple[str, str]]) -> Table:
    table = Table([[label, _escape(value)] for label, value in lines], colWidths=[55 * mm, 110 * mm], hAlign="LEFT")
    table.setStyle(
        TableStyle([("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold"), ("FONTSIZE", (0, 0), (-1, -1), 9),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 2), ("TOPPADDING", (0, 0), (-1, -1), 2)])
    )
    return table


def _grid_style(font_size: float = 8.5) -> TableStyle:
    return TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
            ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
            ("FONTSIZE", (0, 0), (-1, -1), font_size),
            ("ALIGN", (0, 0), (-1, -1), "RIGHT"),
        ]
    )


def _image(overlay: bytes) -> Image:
    """The overlay as its small JPEG preview (made here unless it is one already), fitted to the
    text width and a page-friendly height, aspect kept: a 12-image report stays a few MB."""
    image = Image(io.BytesIO(overlay_preview(overlay)))
    scale = min(PDF_MAX_OVERLAY_WIDTH / image.imageWidth, PDF_MAX_OVERLAY_HEIGHT / image.imageHeight, 1.0)
    image.drawWidth = image.imageWidth * scale
    image.drawHeight = image.imageHeight * scale
    return image


def job_zip(job: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """A ZIP archive of a job's files under one folder `job-<id>/`, names sorted for stable archives."""
    buffer = io.BytesIO()
    write_job_zip(buffer, job, sorted(files), files.__getitem__)
    return buffer.getvalue()


def write_job_zip(target: IO[bytes], job: Mapping[str, Any], names: Iterable[str],
                  read: Callable[[str], bytes]) -> None:
    """`job_zip` into a file, members in the order of `names`, each read by `read(name)` only when
    it is written: one member in memory at a time. Images are stored, the rest deflated."""
    folder = f"job-{job.get('id')}"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            safe = name.replace("\\", "/").lstrip("/")
            if ".." in safe.split("/"):
                raise ValueError(f"Archive member name {name!r} leaves the job folder.")
            compression = zipfile.ZIP_STORED if safe.lower().endswith(COMPRESSED_SUFFIXES) else zipfile.ZIP_DEFLATED
            archive.writestr(f"{folder}/{safe}", read(name), compress_type=compression)


# --------------------------------------------------------------------------------------------
# Statistics across jobs
# --------------------------------------------------------------------------------------------


def aggregate_statistics(jobs: Iterable[Mapping[str, Any]],
                         summaries: Mapping[Any, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Figures across all jobs: counts per state, images, islets, IEQ, failure rate, service times.

    `jobs` are job rows as dicts (`Job.to_dict()`: id, state, created_at, finished_at, image_count,
    training);
    `summaries` maps job id to that job's result summary (default: each row's `summary`).
    """
    jobs = list(jobs)
    if summaries is None:  # the jobs table keeps each finished job's summary beside the row
        summaries = {job.get("id"): job["summary"] for job in jobs if job.get("summary")}
    states: Counter[str] = Counter()
    images = training = 0
    durations: list[float] = []
    first: datetime | None = None
    last: datetime | None = None
    for job in jobs:
        states[str(job.get("state"))] += 1
        images += _image_count(job)
        training += 1 if job.get("training") else 0
        created = parse_utc(job.get("created_at"))
        finished = parse_utc(job.get("finished_at"))
        if created is not None:
            first = created if first is None or created < first else first
            last = created if last is None or created > last else last
        if created is not None and finished is not None and job.get("state") == "done":
            durations.append((finished - created).total_seconds())
    total = sum(states.values())
    islets = sum(int(summary.get("islet_count") or 0) for summary in summaries.values())
    ieq = sum(float(summary.get("ieq_ricordi") or 0.0) for summary in summaries.values())
    finished_jobs = states.get("done", 0) + states.get("failed", 0)
    return {
        "jobs": total,
        "jobs_by_state": dict(sorted(states.items())),
        "images": images,
        "training_jobs": training,
        "islets": islets,
        "ieq_ricordi": round(ieq, 3),
        "mean_islets_per_job": round(islets / len(summaries), 3) if summaries else None,
        "failure_rate": round(states.get("failed", 0) / finished_jobs, 4) if finished_jobs else None,
        "mean_turnaround_s": round(sum(durations) / len(durations), 3) if durations else None,
        "first_job_at": first.isoformat() if first else None,
        "last_job_at": last.isoformat() if last else None,
    }


def _image_count(job: Mapping[str, Any]) -> int:
    if job.get("image_count") is not None:
        return int(job["image_count"])
    files = job.get("file_names")
    return len(files) if isinstance(files, list | tuple) else 0


def _as_day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    parsed = parse_utc(value)
    if parsed is not None:
        return parsed.date()
    return None


def daily_statistics(access_rows: Iterable[Mapping[str, Any]],
                     jobs: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per day: requests, failed requests (status >= 500), jobs submitted, images, failed jobs.

    `access_rows` are `access_stats` rows: `day` (date or ISO text), `status` (int) and
    `requests` (int, default 1); `jobs` are job rows as for `aggregate_statistics`.
    """
    days: dict[date, dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "failed_requests": 0, "jobs": 0, "images": 0, "failed_jobs": 0}
    )
    for row in access_rows:
        day = _as_day(row.get("day"))
        if day is None:
            continue
        count = _request_count(row)
        days[day]["requests"] += count
        if int(row.get("status") or 0) >= 500:
            days[day]["failed_requests"] += count
    for job in jobs:
        day = _as_day(job.get("created_at"))
        if day is None:
            continue
        days[day]["jobs"] += 1
        days[day]["images"] += _image_count(job)
        days[day]["failed_jobs"] += 1 if job.get("state") == "failed" else 0
    return [{"day": day.isoformat(), **values} for day, values in sorted(days.items())]


def _request_count(row: Mapping[str, Any]) -> int:
    """Requests an access row stands for (`requests`, as `access_stats` stores it; 1 when absent)."""
    value = row.get("requests", row.get("count"))
    return 1 if value is None else int(value)


def endpoint_statistics(access_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per day and endpoint (method + route): requests, client errors (4xx), server errors (5xx)."""
    table: dict[tuple[str, str, str], dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "client_errors": 0, "server_errors": 0}
    )
    for row in access_rows:
        day = _as_day(row.get("day"))
        if day is None:
            continue
        key = (day.isoformat(), str(row.get("method") or ""), str(row.get("endpoint") or ""))
        count = _request_count(row)
        status = int(row.get("status") or 0)
        table[key]["requests"] += count
        if 400 <= status < 500:
            table[key]["client_errors"] += count
        elif status >= 500:
            table[key]["server_errors"] += count
    return [
        {"day": day, "method": method, "endpoint": endpoint, **values}
        for (day, method, endpoint), values in sorted(table.items())
    ]


def access_statistics_xlsx(access_rows: Iterable[Mapping[str, Any]], jobs: Iterable[Mapping[str, Any]] = (),
                           totals: Mapping[str, Any] | None = None) -> bytes:
    """The access statistics workbook: sheets "Per day", "Per endpoint" and (with `totals`) "Totals"."""
    rows = list(access_rows)
    workbook = Workbook()
    bold = Font(bold=True)
    per_day = workbook.active
    per_day.title = "Per day"
    day_columns = ["day", "requests", "failed_requests", "jobs", "images", "failed_jobs"]
    _fill(per_day, day_columns, daily_statistics(rows, jobs), bold)
    per_endpoint = workbook.create_sheet("Per endpoint")
    endpoint_columns = ["day", "method", "endpoint", "requests", "client_errors", "server_errors"]
    _fill(per_endpoint, endpoint_columns, endpoint_statistics(rows), bold)
    if totals is not None:
        sheet = workbook.create_sheet("Totals")
        for key, value in totals.items():
            sheet.append([key, _cell(value) if not isinstance(value, dict) else
                          ", ".join(f"{k}: {v}" for k, v in value.items())])
        sheet.column_dimensions["A"].width = 24
    return _save_workbook(workbook)


def _fill(sheet: Any, columns: list[str], rows: list[dict[str, Any]], bold: Font) -> None:
    sheet.append(columns)
    for cell in sheet[1]:
        cell.font = bold
    for row in rows:
        sheet.append([row[column] for column in columns])
    for index, column in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(12, len(column) + 4)
    sheet.freeze_panes = "A2"
