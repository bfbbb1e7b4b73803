"""The file-check pool: jobs run in other processes, within CPU and memory budgets, and a bounded line.

Then what the attachments take from it: images and PDFs are decoded there (text files are not),
within budgets for pixels, pages and text; the declared type is checked before any of that;
and an import's attachments go through the same pool.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from chatbot_app.services import attachments as files
from chatbot_app.services.attachments import AttachmentLimits, AttachmentRejected, check_upload
from chatbot_app.services.file_checks import FileCheckPool, OverBudget, PoolBusy
from chatbot_app.services.library import ConversationLibrary
from chatbot_app.storage.transfer import ImportRejected
from tests.fakes import worker_jobs
from tests.fakes.sample_files import make_image, make_pdf, make_shared_stream_pdf

LIMITS = AttachmentLimits()


@pytest.fixture(scope="module")
def pool() -> Iterator[FileCheckPool]:
    """One worker, a one-second CPU budget: the pool a test shares with the module's other tests."""
    checks = FileCheckPool(workers=1, max_waiting=4, cpu_s=1)
    checks.start()
    yield checks
    checks.close()


async def until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- the pool ----------------------------------------------------------------------------------------


async def test_a_job_runs_in_another_process_each_time(pool: FileCheckPool) -> None:
    first = await pool.run(worker_jobs.process_id)
    second = await pool.run(worker_jobs.process_id)

    assert os.getpid() not in (first, second)
    assert first != second  # one job per process: nothing a job did is left for the next


async def test_a_job_over_its_cpu_budget_is_stopped_and_the_pool_goes_on(pool: FileCheckPool) -> None:
    with pytest.raises(OverBudget) as caught:
        await pool.run(worker_jobs.spin_forever)

    assert caught.value.cpu_s == 1
    assert await pool.run(worker_jobs.process_id) != os.getpid()


async def test_a_job_deaf_to_its_budget_is_killed_and_the_pool_replaced(pool: FileCheckPool) -> None:
    replaced = pool.replacements

    with pytest.raises(OverBudget):
        await pool.run(worker_jobs.spin_deaf_to_the_budget)

    assert pool.replacements >= replaced + 1
    assert await pool.run(worker_jobs.process_id) != os.getpid()


async def test_a_job_beside_a_killed_one_still_gets_its_answer() -> None:
    checks = FileCheckPool(workers=2, max_waiting=0, cpu_s=1)
    try:
        killed = asyncio.ensure_future(checks.run(worker_jobs.spin_deaf_to_the_budget))
        beside = asyncio.ensure_future(checks.run(worker_jobs.idle_then_answer, 3.0, "still here"))

        assert await beside == "still here"
        with pytest.raises(OverBudget):
            await killed
    finally:
        checks.close()


async def test_jobs_a_broken_pool_took_down_run_again_no_more_at_once_than_its_workers() -> None:
    checks = FileCheckPool(workers=1, max_waiting=3, cpu_s=1)
    try:
        killed = asyncio.ensure_future(checks.run(worker_jobs.spin_deaf_to_the_budget))
        beside = [asyncio.ensure_future(checks.run(worker_jobs.idle_span, 0.3)) for _ in range(3)]

        spans = sorted([await job for job in beside])
        with pytest.raises(OverBudget):
            await killed
        assert all(later_start >= end for (_, end), (later_start, _) in itertools.pairwise(spans))
    finally:
        checks.close()


async def test_a_job_over_its_memory_budget_fails_in_its_worker() -> None:
    checks = FileCheckPool(workers=1, max_waiting=0, cpu_s=5, memory_mib=256)
    try:
        with pytest.raises(MemoryError):
            await checks.run(worker_jobs.allocate, 512)
        assert await checks.run(worker_jobs.allocate, 16) == 16 * 2**20
    finally:
        checks.close()


async def test_past_the_waiting_line_a_job_is_refused_at_once() -> None:
    checks = FileCheckPool(workers=1, max_waiting=1, cpu_s=5)
    try:
        running = [asyncio.ensure_future(checks.run(worker_jobs.idle_then_answer, 1.0, str(n))) for n in range(2)]
        await until(lambda: checks.admitted == 2)

        with pytest.raises(PoolBusy):
            await checks.run(worker_jobs.process_id)
        assert await asyncio.gather(*running) == ["0", "1"]
        assert checks.admitted == 0
    finally:
        checks.close()


async def test_a_caller_that_leaves_keeps_its_place_until_its_job_ends() -> None:
    checks = FileCheckPool(workers=1, max_waiting=0, cpu_s=5)
    try:
        left = asyncio.ensure_future(checks.run(worker_jobs.idle_then_answer, 1.0, "late"))
        await until(lambda: checks.admitted == 1)
        left.cancel()

        with pytest.raises(PoolBusy):  # the job is still running in its worker
            await checks.run(worker_jobs.process_id)
        await until(lambda: checks.admitted == 0)
        assert await checks.run(worker_jobs.process_id) != os.getpid()
    finally:
        checks.close()


# -- attachments -------------------------------------------------------------------------------------


async def test_images_and_pdfs_are_decoded_in_the_pool_and_text_is_not(pool: FileCheckPool) -> None:
    before = pool.jobs_run

    pdf = await check_upload("report.pdf", make_pdf("Revenue rose."), LIMITS, pool, "application/pdf")
    image = await check_upload("photo.jpg", make_image(300, 200, "JPEG"), LIMITS, pool, "image/jpeg")
    notes = await check_upload("notes.md", b"# Notes", LIMITS, pool, "text/markdown")

    assert (pdf.text, image.media_type, notes.text) == ("Revenue rose.", "image/jpeg", "# Notes")
    assert pool.jobs_run == before + 2


@pytest.mark.parametrize(
    ("name", "data", "content_type", "words"),
    [
        ("photo.png", make_pdf("x"), None, "does not contain a PNG, JPEG or WebP image, as its name says"),
        ("scan", make_image(), "application/pdf", "does not contain a PDF, as its type (application/pdf) says"),
        ("report.pdf", make_image(), "application/pdf", "does not contain a PDF, as its name says"),
        ("chart", make_pdf("x"), "image/png", "does not contain a PNG, JPEG or WebP image, as its type (image/png)"),
        ("notes.txt", make_pdf("x"), "text/plain", "does not contain a UTF-8 text file"),
        ("anim.gif", make_image(fmt="GIF"), "image/gif", "is a GIF image; attach PNG, JPEG or WebP images"),
        ("scan.tiff", make_image(fmt="TIFF"), None, "is a TIFF image"),
    ],
)
async def test_a_declared_type_that_the_content_belies_is_refused_before_any_decoding(
    pool: FileCheckPool, name: str, data: bytes, content_type: str | None, words: str
) -> None:
    before = pool.jobs_run

    with pytest.raises(AttachmentRejected, match=re.escape(words)):
        await check_upload(name, data, LIMITS, pool, content_type)

    assert pool.jobs_run == before


async def test_a_content_type_that_promises_nothing_we_check_is_not_held_against_the_file(
    pool: FileCheckPool,
) -> None:
    # Browsers send .ts files as video/mp2t, and unknown ones as application/octet-stream.
    code = await check_upload("app.ts", b"const x = 1;", LIMITS, pool, "video/mp2t")
    blob = await check_upload("report", make_pdf("Fine."), LIMITS, pool, "application/octet-stream")

    assert (code.text, blob.text) == ("const x = 1;", "Fine.")


async def test_a_pdf_whose_pages_share_one_heavy_stream_is_stopped_at_the_cpu_budget(pool: FileCheckPool) -> None:
    attack = make_shared_stream_pdf(pages=200)  # about 30 KB, and 0.1 s a page to read
    assert len(attack) < 40_000

    with pytest.raises(AttachmentRejected, match=r"attack\.pdf takes too long to read \(over 1 s of processing\)"):
        await check_upload("attack.pdf", attack, LIMITS, pool)


async def test_a_pdf_over_the_page_budget_is_refused_before_its_text_is_read(pool: FileCheckPool) -> None:
    limits = AttachmentLimits(max_pdf_pages=3)

    with pytest.raises(AttachmentRejected, match=r"long\.pdf has 4 pages; PDFs can have at most 3"):
        await check_upload("long.pdf", make_shared_stream_pdf(pages=4, operations=10), limits, pool)


async def test_a_pdf_text_stops_at_the_text_budget(pool: FileCheckPool) -> None:
    limits = AttachmentLimits(max_text_chars=25)

    pdf = await check_upload("long.pdf", make_shared_stream_pdf(pages=50, operations=10), limits, pool)

    assert len(pdf.text or "") <= 25


async def test_an_image_over_the_pixel_budget_is_refused_before_its_pixels_are_decoded(pool: FileCheckPool) -> None:
    limits = AttachmentLimits(max_pixels=1_000_000)

    with pytest.raises(AttachmentRejected, match=r"big\.png is 2000x1000 pixels, which is too large"):
        await check_upload("big.png", make_image(2000, 1000), limits, pool)


# -- imports share the pool --------------------------------------------------------------------------


def export_with(name: str, data: bytes) -> bytes:
    attachment = {"filename": name, "media_type": "application/pdf", "data": base64.b64encode(data).decode()}
    message = {"role": "user", "content": "see file", "created_at": "2026-01-01T00:00:00", "attachments": [attachment]}
    conversation = {"title": "t", "created_at": "2026-01-01T00:00:00", "messages": [message]}
    return json.dumps({"format": "chatbot_app", "version": 1, "conversations": [conversation]}).encode()


async def test_an_import_checks_its_attachments_in_the_pool(engine: Engine, pool: FileCheckPool) -> None:
    library = ConversationLibrary(engine, file_checks=pool)
    before = pool.jobs_run

    summary = await library.import_file("owner-1", export_with("report.pdf", make_pdf("Imported text.")))

    assert len(summary.ids) == 1
    assert pool.jobs_run == before + 1
    with pytest.raises(ImportRejected, match=r"attachment 1: attack\.pdf takes too long to read"):
        await library.import_file("owner-1", export_with("attack.pdf", make_shared_stream_pdf(pages=200)))


STEP = files.TEXT_STEP_BYTES


@pytest.mark.parametrize(
    "data",
    [
        b"a" * (STEP - 1) + "é漢".encode() * 3,  # characters split across the steps' boundary
        "\ufeffwith a byte-order mark, ".encode() * 20_000,
        b"x" * (2 * STEP) + b"\xff",  # invalid at the very end
        b"x" * (STEP + 5) + b"\x00",  # a NUL in a later step
    ],
    ids=["split", "bom", "invalid", "nul"],
)
async def test_a_text_file_checked_in_steps_gets_what_one_decode_would_give(pool: FileCheckPool, data: bytes) -> None:
    limits = AttachmentLimits(max_text_chars=300_000)
    try:
        expected: object = files.prepare_attachment("notes.txt", data, limits)
    except AttachmentRejected as exc:
        expected = str(exc)

    try:
        got: object = await check_upload("notes.txt", data, limits, pool)
    except AttachmentRejected as exc:
        got = str(exc)

    assert got == expected
