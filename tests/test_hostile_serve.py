"""htr-serve on loopback against hostile clients: too many files, disconnects, stalled
uploads, pixel budgets, Host headers, and what /v1/model may tell the world."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from runtime_fixtures import draw_word, make_tiny_model, tiny_spec  # noqa: E402

MAX_FILES = 4
TIMEOUT = 1.5
SECRET = "/home/alice/private/iam"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_serve")
    spec = tiny_spec(None).with_source(command=f"htr-train --data {SECRET} --out /home/alice/runs/x", data=SECRET,
                                      init_from="/home/alice/runs/w/model.keras", epochs=7, val_cer=0.25)
    model = make_tiny_model(root / "m.onnx", width=None, spec=spec)
    port = _free_port()
    log = root / "server.log"
    cmd = [
        sys.executable, "-m", "htr.runtime.serve.cli", "--model", str(model), "--port", str(port),
        "--max-files", str(MAX_FILES), "--max-pixels", "400000", "--max-request-pixels", "500000",
        "--body-timeout", str(TIMEOUT), "--allowed-host", "127.0.0.1", "--allowed-host", "localhost",
        "--threads", "1", "--log-level", "info",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            status, _, _ = http(port, "GET", "/healthz")
            if status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield port, log
    proc.terminate()
    proc.wait(timeout=10)


def http(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, host: str = "127.0.0.1"):
    """One request on a fresh connection: (status, headers text, body bytes)."""
    head = {"Host": host, "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(raw.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    return int(header.split()[1]), header.decode("latin-1"), rest


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n\r\n'.encode() + data + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_far_too_many_files_is_413_not_400(server):
    port, _ = server
    body, kind = multipart([(f"{i}.png", png(draw_word("a"))) for i in range(49)])
    status, _, answer = http(port, "POST", "/v1/recognize", body, {"Content-Type": kind})
    assert status == 413 and f"at most {MAX_FILES} files" in json.loads(answer)["error"]


def test_the_pixels_of_one_request_are_bounded_together(server):
    port, _ = server
    big = png(np.full((500, 600), 255, np.uint8))  # 300,000 px: within the per-image limit
    body, kind = multipart([("1.png", big), ("2.png", big)])
    status, _, answer = http(port, "POST", "/v1/recognize", body, {"Content-Type": kind})
    assert status == 413 and "600,000 pixels together" in json.loads(answer)["error"]
    body, kind = multipart([("1.png", big), ("w.png", png(draw_word("ab")))])
    status, _, answer = http(port, "POST", "/v1/recognize", body, {"Content-Type": kind})
    assert status == 200 and json.loads(answer)["results"][1]["text"] == "ab"


def test_a_stalled_upload_gets_408_and_is_closed(server):
    port, _ = server
    body, kind = multipart([("w.png", png(draw_word("ab")))])
    head = (f"POST /v1/recognize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    socks = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head + body[:50])  # then nothing more
        socks.append(sock)
    begun = time.monotonic()
    for sock in socks:
        data = b""
        while chunk := sock.recv(65536):  # returns b"" once the server closes the connection
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.1 408"), data[:200]
        assert b"not received within 1.5 s" in data
    assert time.monotonic() - begun < 10
    status, _, _ = http(port, "GET", "/healthz")
    assert status == 200


def test_client_disconnects_leave_no_traceback_in_the_log(server):
    port, log = server
    body, kind = multipart([("w.png", png(draw_word("ab")))])
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall((f"POST /v1/recognize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:40])
    time.sleep(0.5)
    status, _, _ = http(port, "GET", "/healthz")
    assert status == 200
    text = log.read_text()
    assert "Traceback" not in text and "Exception" not in text, text[-3000:]


def test_model_info_shows_no_training_paths(server):
    port, _ = server
    status, _, answer = http(port, "GET", "/v1/model")
    assert status == 200
    assert "/home/alice" not in answer.decode()
    source = json.loads(answer)["metadata"]["htr.source"]
    assert source == {"epochs": 7, "val_cer": 0.25}


def test_only_allowed_host_headers_are_served(server):
    port, _ = server
    assert http(port, "GET", "/healthz", host="evil.example")[0] == 400
    assert http(port, "GET", "/healthz", host=f"localhost:{port}")[0] == 200
