"""Uploads to /_upload are refused past CHATBOT_MAX_IMPORT_BYTES while they arrive, leaving nothing on disk.

The app behind the limit parses uploads exactly as Reflex's buffered upload does (Starlette's
`request.form()`, which spools files to disk); the body is a 1 GiB stream made as it is read.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatbot_app.upload_limit import limit_upload_rate, limit_upload_size

LIMIT = 20 * 2**20
ONE_GIB = 2**30
CHUNK = 2**20
BOUNDARY = "limit-test-boundary"


class Sent:
    bytes = 0


async def multipart_stream(total: int, sent: Sent) -> AsyncIterator[bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.json"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    yield head
    chunk = b"x" * CHUNK
    while sent.bytes < total:
        sent.bytes += len(chunk)
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def upload(request: Request) -> JSONResponse:
    form = await request.form()
    sizes = [len(await file.read()) for file in form.getlist("files")]  # type: ignore[union-attr]
    await form.close()
    return JSONResponse({"sizes": sizes})


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the parser spools files during the test (tempfile's directory)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def open_spooled_bytes(directory: Path) -> int:
    """Bytes held by this process's open files in `directory`, deleted or not (disk use that the upload caused)."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)):
                total += os.fstat(int(fd)).st_size
        except OSError:
            continue
    return total + sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def backend() -> httpx.AsyncClient:
    app = limit_upload_size(LIMIT)(Starlette(routes=[Route("/_upload", upload, methods=["POST"])]))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://backend", timeout=60)


HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def test_a_streamed_1_gib_upload_is_refused_early_and_leaves_nothing_on_disk(spool_dir: Path) -> None:
    sent = Sent()
    async with backend() as client:
        response = await client.post("/_upload", content=multipart_stream(ONE_GIB, sent), headers=HEADERS)
    gc.collect()

    assert response.status_code == 413
    assert "limited to 20 MiB" in response.json()["detail"]
    assert sent.bytes <= LIMIT + 2 * CHUNK  # it stopped reading at the limit, not at 1 GiB
    assert open_spooled_bytes(spool_dir) == 0


async def test_a_declared_1_gib_upload_is_refused_before_reading(spool_dir: Path) -> None:
    sent = Sent()
    async with backend() as client:
        request = client.build_request(
            "POST",
            "/_upload",
            content=multipart_stream(ONE_GIB, sent),
            headers=HEADERS | {"Content-Length": str(ONE_GIB)},
        )
        response = await client.send(request)

    assert response.status_code == 413
    assert sent.bytes == 0
    assert open_spooled_bytes(spool_dir) == 0


async def test_an_upload_under_the_limit_reaches_the_app(spool_dir: Path) -> None:
    sent = Sent()
    async with backend() as client:
        response = await client.post("/_upload", content=multipart_stream(5 * CHUNK, sent), headers=HEADERS)

    assert response.status_code == 200
    assert response.json() == {"sizes": [5 * CHUNK]}


async def test_other_paths_are_not_limited(spool_dir: Path) -> None:
    app = limit_upload_size(10)(Starlette(routes=[Route("/other", upload, methods=["POST"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client:
        response = await client.post("/other", content=multipart_stream(CHUNK, Sent()), headers=HEADERS)

    assert response.status_code == 200


# --- the rate -----------------------------------------------------------------------------------


async def test_an_address_past_its_uploads_a_minute_gets_429_before_its_body_is_read(spool_dir: Path) -> None:
    reads = Sent()

    async def counting(request: Request) -> JSONResponse:
        reads.bytes += 1
        return await upload(request)

    inner = Starlette(
        routes=[Route("/_upload", counting, methods=["POST"]), Route("/other", counting, methods=["POST"])]
    )
    app = limit_upload_rate(2, trusted_proxies=["10.0.0.1"])(inner)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 4321))  # a trusted proxy, as nginx would be
    async with httpx.AsyncClient(transport=transport, base_url="http://backend", timeout=60) as client:

        async def post(path: str, client_address: str) -> httpx.Response:
            headers = {**HEADERS, "X-Forwarded-For": client_address}
            return await client.post(path, content=multipart_stream(CHUNK, Sent()), headers=headers)

        statuses = [(await post("/_upload", "203.0.113.7")).status_code for _ in range(3)]
        refused = await post("/_upload", "203.0.113.7")
        elsewhere = await post("/_upload", "198.51.100.9")  # another client behind the same proxy
        other_path = await post("/other", "203.0.113.7")

    assert statuses == [200, 200, 429]
    assert (refused.status_code, refused.json()["detail"]) == (
        429,
        "Too many uploads from your network: the limit is 2 a minute.",
    )
    assert (elsewhere.status_code, other_path.status_code) == (200, 200)
    assert reads.bytes == 4  # two uploads, the other client's, and the other path: refused ones were never read


# --- the real backend -------------------------------------------------------------------------------


def _processes_holding(directory: Path) -> int:
    """Bytes in files under `directory` that any of our processes holds open (deleted spool files included)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(directory)):
                    total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
            except OSError:
                continue
    return total


def _raw_upload(port: int, handler: str, *, declared: int | None, total: int) -> tuple[int, int]:
    """POST a multipart upload of `total` bytes over a plain socket, reading the answer as soon as there is one.

    Returns (HTTP status, bytes of file sent before the server answered).
    """
    import select
    import socket

    head = [
        "POST /_upload HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        "reflex-client-token: " + "t" * 32,
        f"reflex-event-handler: {handler}",
        f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked",
    ]
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        part_head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.json"\r\n'
            "Content-Type: application/json\r\n\r\n"
        ).encode()
        sock.sendall(part_head if declared is not None else f"{len(part_head):x}\r\n".encode() + part_head + b"\r\n")
        chunk = b"x" * CHUNK
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            frame = chunk if declared is not None else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            try:
                sock.sendall(frame)
            except OSError:  # the server closed the connection after answering
                break
            sent += len(chunk)
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]), sent


def test_the_backend_refuses_a_1_gib_upload_and_disk_use_does_not_grow(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from chatbot_app.state.library import LibraryState
    from tests.conftest import migrate
    from tests.e2e.live_app import Backend, app_environment, free_port

    workdir = tmp_path_factory.mktemp("upload")
    spool = workdir / "spool"
    spool.mkdir()
    database_url = f"sqlite:///{workdir / 'app.db'}"
    migrate(database_url)
    env = app_environment(
        CHATBOT_DATABASE_URL=database_url, CHATBOT_LOCAL_MODEL="off", CHATBOT_API_KEYS="", TMPDIR=str(spool)
    )
    backend = Backend(free_port(), env, workdir / "backend.log")
    backend.start()
    try:
        handler = f"{LibraryState.get_full_name()}.import_file"
        declared_status, _ = _raw_upload(backend.port, handler, declared=ONE_GIB, total=ONE_GIB)
        streamed_status, streamed_sent = _raw_upload(backend.port, handler, declared=None, total=ONE_GIB)
        held = _processes_holding(spool)
    finally:
        backend.stop()

    assert declared_status == 413
    assert streamed_status == 413
    assert streamed_sent <= 2 * LIMIT  # refused near the limit, not after the whole gigabyte
    assert held == 0
    assert not any(spool.iterdir())
