"""Unit tests of the pure report builders: files are read back with the libraries users' tools rely on."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import UTC, datetime

import numpy as np
import pytest
from openpyxl import load_workbook
from PIL import Image, ImageDraw
from pypdf import PdfReader

from services.backend import reports
from services.common.previews import PREVIEW_MAX_PX


def _islet(number: int, diameter: float, ieq: float) -> dict:
    return {
        "number": number,
        "area_um2": round(3.14159 * (diameter / 2) ** 2, 1),
        "equivalent_diameter_um": diameter,
        "major_axis_um": diameter * 1.1,
        "minor_axis_um": diameter * 0.9,
        "circularity": 0.91,
        "centroid_px": [10 * number, 20 * number],
        "contour_px": [[0, 0], [1, 0], [1, 1]],
        "ieq_ricordi": ieq,
        "ieq_sphere": ieq * 1.01,
        "ieq_ellipsoid": ieq * 0.98,
    }


def _image_result(islets: list[dict], purity: float) -> dict:
    tissue_um2 = 10_000.0
    return {
        "islets": islets,
        "summary": {
            "islet_count": len(islets),
            "ieq_ricordi": sum(i["ieq_ricordi"] for i in islets),
            "ieq_sphere": sum(i["ieq_sphere"] for i in islets),
            "ieq_ellipsoid": sum(i["ieq_ellipsoid"] for i in islets),
            "purity": purity,
            "islet_area_um2": purity * tissue_um2,
            "exocrine_area_um2": (1 - purity) * tissue_um2,
            "fragmentation": 0.05,
            "size_classes": {"50-100": 1, "100-150": len(islets) - 1},
            "pixel_size_um": 0.843,
            "model": "classical",
        },
    }


@pytest.fixture()
def job() -> dict:
    return {
        "id": "7f3c2a",
        "state": "done",
        "created_at": datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 11, 25, 8, 1, 30, tzinfo=UTC),
        "model": "classical",
        "pixel_size_um": 0.843,
        "file_names": ["sample-a.png", "sample-b.png"],
    }


@pytest.fixture()
def result() -> dict:
    first = _image_result([_islet(1, 80.0, 0.167), _islet(2, 120.5, 0.667), _islet(3, 140.0, 0.667)], 0.8)
    second = _image_result([_islet(1, 61.0, 0.167), _islet(2, 110.0, 0.667)], 0.6)
    return {"images": [{"index": 0, "name": "a.png", **first}, {"index": 1, "name": "b.png", **second}]}


def _png(width: int = 300, height: int = 200) -> bytes:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).ellipse((50, 50, 120, 120), outline="red", width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_job_summary_adds_up_images_when_the_result_has_no_job_summary(result: dict) -> None:
    summary = reports.job_summary(result)
    assert summary["islet_count"] == 5
    assert summary["ieq_ricordi"] == pytest.approx(0.167 * 2 + 0.667 * 3)
    assert summary["purity"] == pytest.approx(0.7)  # area-weighted: 14000 of 20000 µm² of tissue
    assert {name: n for name, n in summary["size_classes"].items() if n} == {"50-100": 2, "100-150": 3}


def test_job_summary_prefers_the_job_summary(result: dict) -> None:
    result["summary"] = {"islet_count": 99, "ieq_ricordi": 12.5, "purity": 0.42}
    summary = reports.job_summary(result)
    assert (summary["islet_count"], summary["ieq_ricordi"], summary["purity"]) == (99, 12.5, 0.42)


def test_csv_has_one_row_per_islet_over_all_images(job: dict, result: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(reports.job_csv(job, result).decode("utf-8"))))
    assert len(rows) == 5
    assert [(r["image"], r["islet"]) for r in rows] == [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1"), ("2", "2")]
    assert rows[1]["equivalent_diameter_um"] == "120.5"
    assert rows[3]["centroid_x_px"] == "10"
    assert [r["file"] for r in rows] == ["a.png"] * 3 + ["b.png"] * 2


def test_csv_of_a_result_without_islets_is_just_the_header(job: dict) -> None:
    text = reports.job_csv(job, {"images": [{"islets": [], "summary": {}}]}).decode()
    assert text.splitlines() == [",".join(heading for _, heading in reports.ISLET_COLUMNS)]


def test_xlsx_reads_back_with_summary_and_islet_sheets(job: dict, result: dict) -> None:
    workbook = load_workbook(io.BytesIO(reports.job_xlsx(job, result)))
    assert workbook.sheetnames == ["Summary", "Islets"]
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["Job"] == "7f3c2a"
    assert summary["Islet count"] == 5
    assert summary["IEQ (Ricordi classes)"] == pytest.approx(2.335)
    assert summary["Purity"] == pytest.approx(0.7)
    assert summary["100-150"] == 3
    islets = list(workbook["Islets"].iter_rows(values_only=True))
    assert islets[0][:4] == ("image", "file", "islet", "area_um2")
    assert len(islets) == 6
    assert islets[2][4] == 120.5  # numbers stay numbers, so spreadsheets can sum them


def test_pdf_contains_the_summary_numbers_and_every_islet(job: dict, result: dict) -> None:
    pdf = reports.job_pdf(job, result, [_png(), _png(1600, 1200)])
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "7f3c2a" in text
    assert re.search(r"Islet count\s+5\s", text)
    assert re.search(r"IEQ \(Ricordi classes\)\s+2\.3[34]\s", text)  # 2.335 to 2 places
    assert re.search(r"Purity\s+0\.70\s", text)
    assert re.search(r"Pixel size \(µm/px\)\s+0\.843\s", text)
    assert "120.5" in text  # an islet row
    assert "Islets (5)" in text
    images = [image for page in reader.pages for image in page.images]
    assert len(images) == 2


def test_pdf_of_a_long_table_spans_pages(job: dict) -> None:
    many = _image_result([_islet(n, 60.0 + n, 0.167) for n in range(1, 181)], 0.9)
    reader = PdfReader(io.BytesIO(reports.job_pdf(job, {"images": [many]})))
    assert len(reader.pages) >= 3
    assert "Islets (180)" in reader.pages[0].extract_text() + reader.pages[1].extract_text()


def test_zip_puts_files_under_the_job_folder(job: dict) -> None:
    archive = zipfile.ZipFile(io.BytesIO(reports.job_zip(job, {"b/result.json": b"{}", "a.csv": b"x"})))
    assert archive.namelist() == ["job-7f3c2a/a.csv", "job-7f3c2a/b/result.json"]
    assert archive.read("job-7f3c2a/a.csv") == b"x"


def test_zip_refuses_names_that_leave_the_job_folder(job: dict) -> None:
    with pytest.raises(ValueError, match="leaves the job folder"):
        reports.job_zip(job, {"../etc/passwd": b"x"})


def test_aggregate_statistics_counts_states_images_and_turnaround() -> None:
    t0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    jobs = [
        {"id": 1, "state": "done", "created_at": t0, "finished_at": t0.replace(minute=2), "image_count": 2},
        {"id": 2, "state": "done", "created_at": t0.replace(hour=11), "finished_at": t0.replace(hour=11, minute=4),
         "image_count": 1, "training": True},
        {"id": 3, "state": "failed", "created_at": "2026-11-25T09:00:00+00:00", "image_count": 1},
        {"id": 4, "state": "queued", "created_at": "2026-11-25T09:30:00Z", "image_count": 3},
    ]
    stats = reports.aggregate_statistics(jobs, {1: {"islet_count": 10, "ieq_ricordi": 5.5},
                                                2: {"islet_count": 4, "ieq_ricordi": 1.25}})
    assert stats["jobs"] == 4
    assert stats["jobs_by_state"] == {"done": 2, "failed": 1, "queued": 1}
    assert stats["images"] == 7
    assert stats["training_jobs"] == 1
    assert stats["islets"] == 14
    assert stats["ieq_ricordi"] == 6.75
    assert stats["mean_islets_per_job"] == 7.0
    assert stats["failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert stats["mean_turnaround_s"] == 180.0
    assert stats["first_job_at"].startswith("2026-11-24T10:00")
    assert stats["last_job_at"].startswith("2026-11-25T09:30")


def test_aggregate_statistics_reads_summaries_from_the_job_rows() -> None:
    jobs = [{"id": "a", "state": "done", "summary": {"islet_count": 3, "ieq_ricordi": 1.5}},
            {"id": "b", "state": "failed", "summary": None}]
    stats = reports.aggregate_statistics(jobs)
    assert (stats["islets"], stats["ieq_ricordi"], stats["failure_rate"]) == (3, 1.5, 0.5)


def test_aggregate_statistics_of_nothing_has_no_rates() -> None:
    stats = reports.aggregate_statistics([])
    assert stats["jobs"] == 0 and stats["failure_rate"] is None and stats["mean_turnaround_s"] is None


ACCESS_ROWS = [
    {"day": "2026-11-24", "method": "GET", "endpoint": "/api/jobs", "status": 200, "requests": 40},
    {"day": "2026-11-24", "method": "POST", "endpoint": "/api/jobs", "status": 201, "requests": 5},
    {"day": "2026-11-24", "method": "POST", "endpoint": "/api/jobs", "status": 415, "requests": 2},
    {"day": "2026-11-25", "method": "GET", "endpoint": "/api/health", "status": 503, "requests": 3},
]


def test_daily_and_endpoint_statistics() -> None:
    jobs = [{"state": "done", "created_at": "2026-11-24T12:00:00Z", "image_count": 2},
            {"state": "failed", "created_at": "2026-11-24T13:00:00Z", "image_count": 1}]
    days = reports.daily_statistics(ACCESS_ROWS, jobs)
    assert days == [
        {"day": "2026-11-24", "requests": 47, "failed_requests": 0, "jobs": 2, "images": 3, "failed_jobs": 1},
        {"day": "2026-11-25", "requests": 3, "failed_requests": 3, "jobs": 0, "images": 0, "failed_jobs": 0},
    ]
    endpoints = reports.endpoint_statistics(ACCESS_ROWS)
    post = next(row for row in endpoints if row["method"] == "POST")
    assert post == {"day": "2026-11-24", "method": "POST", "endpoint": "/api/jobs", "requests": 7,
                    "client_errors": 2, "server_errors": 0}


def test_access_statistics_xlsx_reads_back() -> None:
    data = reports.access_statistics_xlsx(ACCESS_ROWS, [], totals={"jobs": 2, "jobs_by_state": {"done": 2}})
    workbook = load_workbook(io.BytesIO(data))
    assert workbook.sheetnames == ["Per day", "Per endpoint", "Totals"]
    per_day = list(workbook["Per day"].iter_rows(values_only=True))
    assert per_day[0] == ("day", "requests", "failed_requests", "jobs", "images", "failed_jobs")
    assert per_day[1][:3] == ("2026-11-24", 47, 0)
    assert len(list(workbook["Per endpoint"].iter_rows(values_only=True))) == 4
    totals = {row[0]: row[1] for row in workbook["Totals"].iter_rows(values_only=True)}
    assert totals == {"jobs": 2, "jobs_by_state": "done: 2"}


def _noisy_overlays(count: int, width: int, height: int) -> list[bytes]:
    """Distinct overlays as hard to compress as photographs (noise over smooth colour); JPEG keeps
    making them quick (the PDF takes PNG and JPEG alike)."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), np.full_like(x, 120)], axis=2).astype(np.int16)
    noisy = np.clip(base + rng.integers(-40, 40, size=base.shape), 0, 255).astype(np.uint8)
    overlays = []
    for shift in range(count):  # reportlab embeds identical images once: each one differs
        buffer = io.BytesIO()
        Image.fromarray(np.roll(noisy, shift * 7, axis=1)).save(buffer, format="JPEG", quality=95)
        overlays.append(buffer.getvalue())
    return overlays


def test_a_12_image_pdf_embeds_downscaled_overlays_and_stays_small(job: dict, result: dict) -> None:
    # Distinct images (reportlab embeds identical ones once), larger than the preview size; bench/
    # report_pdf.py builds the full-size (4096×3072) case.
    overlays = _noisy_overlays(12, 2000, 1500)
    assert sum(map(len, overlays)) > 15_000_000
    pdf = reports.job_pdf(job, result, iter(overlays))
    assert len(pdf) <= 10_000_000, f"{len(pdf) / 1e6:.1f} MB"
    images = [image for page in PdfReader(io.BytesIO(pdf)).pages for image in page.images]
    assert len(images) == 12
    assert all(max(image.image.size) <= PREVIEW_MAX_PX for image in images)


def test_pdf_lists_each_images_quality_flags_and_nothing_when_there_are_none(job: dict, result: dict) -> None:
    def text_of(pdf: bytes) -> str:
        return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)

    assert "Check these images" not in text_of(reports.job_pdf(job, result))
    result["images"][1]["quality_flags"] = [
        {"code": "out_of_focus", "value": 0.0002, "message": "The image is out of focus: refocus & retake."}
    ]
    text = text_of(reports.job_pdf(job, result))
    assert "Check these images" in text
    assert "Image 2 (b.png): The image is out of focus: refocus & retake." in " ".join(text.split())
