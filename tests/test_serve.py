"""htr-serve through a real server: `python -m htr.runtime.serve.cli` on a loopback port
with the tiny model, spoken to over HTTP (stdlib only), and the page in headless Chromium
driven over the DevTools protocol on a pipe (no selenium, no websockets).

The browser test is skipped when no chromium is installed; CI installs Debian's
`chromium` (see .ci/run).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="htr-serve needs the serve extra: pip install 'htr[serve]'")
pytest.importorskip("uvicorn", reason="htr-serve needs the serve extra: pip install 'htr[serve]'")

from runtime_fixtures import FAULTY_GREEDY, draw_word, make_tiny_model, tiny_spec  # noqa: E402

MAX_BYTES = 200_000
MAX_FILES = 6
MAX_PIXELS = 500_000


# ---- a real server ------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    """Base URL of `htr-serve` running the dynamic-width tiny model in a subprocess."""
    yield from _serve(tiny_models["dynamic"], tmp_path_factory.mktemp("serve") / "server.log")


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory):
    """`htr-serve` with a model whose output is NaN for an image that starts black, and a
    greedy decoder that raises on a batch holding a row it reads as "ba"."""
    folder = tmp_path_factory.mktemp("faulty")
    model = make_tiny_model(folder / "nan.onnx", width=None, nan_when_black=True)
    yield from _serve(model, folder / "server.log", prelude=FAULTY_GREEDY)


def _serve(model: Path, log: Path, prelude: str = "", extra: tuple[str, ...] = ()):
    """Start htr-serve on `model`; `extra` options come last (a repeated option: the last wins)."""
    port = _free_port()
    code = prelude + "\nfrom htr.runtime.serve.cli import app\napp()\n"
    cmd = [
        sys.executable, "-c", code,
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--max-bytes", str(MAX_BYTES), "--max-files", str(MAX_FILES), "--max-pixels", str(MAX_PIXELS),
        "--max-concurrent", "2", "--threads", "1", "--log-level", "warning", *extra,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"htr-serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"htr-serve did not answer within 30 s:\n{log.read_text()}")
        time.sleep(0.1)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, json.loads(response.read())


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body with one `files` part per (filename, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def recognize(url: str, files: list[tuple[str, bytes]], **fields: str) -> tuple[int, dict]:
    body, content_type = multipart(files, fields)
    return post(url + "/v1/recognize", body, content_type)


def encode(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG claiming to be width x height (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


# ---- in-process pieces (no server) ---------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_image_size_is_read_from_the_header(suffix):
    from htr.runtime.serve.limits import image_size

    data = encode(np.full((37, 91), 200, np.uint8), suffix)
    assert image_size(data) == (91, 37)
    assert image_size(data[:8]) is None or suffix == ".bmp"  # too short: unknown, decoded later


def test_image_size_of_unknown_bytes_is_none():
    from htr.runtime.serve.limits import image_size

    assert image_size(b"GIF89a....") is None
    assert image_size(png_header(30_000, 20_000)) == (30_000, 20_000)


def test_multipart_is_parsed_in_memory():
    from htr.runtime.serve.uploads import FormError, parse_multipart

    body, content_type = multipart([("a.png", b"\x00\x01\r\n--x"), ("b.png", b"")], {"decoder": "beam"})
    form = parse_multipart(content_type, body)
    assert [(u.filename, u.data) for u in form.files["files"]] == [("a.png", b"\x00\x01\r\n--x"), ("b.png", b"")]
    assert form.fields == {"decoder": "beam"}
    with pytest.raises(FormError, match="more than 1 form parts"):
        parse_multipart(content_type, body, max_parts=1)
    with pytest.raises(FormError, match="boundary"):
        parse_multipart("multipart/form-data", body)


def test_service_with_a_fixed_width_model(tiny_models):
    from htr.runtime.engine import Engine
    from htr.runtime.serve import ServeLimits
    from htr.runtime.serve.service import RecognitionService, RequestError
    from htr.runtime.serve.uploads import Upload

    service = RecognitionService(Engine(tiny_models["fixed"], threads=1), ServeLimits(max_pixels=10_000))
    uploads = [Upload("ab.png", encode(draw_word("ab"), ".png")), Upload("", b"junk"),
               Upload("wide.png", encode(np.full((32, 400), 255, np.uint8), ".png"))]
    results = service.recognise(uploads, decoder="beam", beam_width=3)
    assert [r.ok for r in results] == [True, False, False]
    assert results[0].decoded.text == "ab" and set(results[0].alternatives) == {"beam", "greedy"}
    assert results[1].filename == "file-2" and "file-2: is not a png" in results[1].error
    assert "400x32 pixels (12,800)" in results[2].error
    assert service.decoder("beam", 3) is service.decoder("beam", 3)  # built once, shared
    with pytest.raises(RequestError, match="beam_width"):
        service.recognise(uploads, beam_width=1000)


def test_cli_refuses_a_missing_model(tmp_path):
    from typer.testing import CliRunner

    from htr.runtime.serve.cli import app

    result = CliRunner().invoke(app, ["--model", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 2
    assert "missing.onnx" in result.output and "no such model file" in result.output


# ---- the API --------------------------------------------------------------------------
def test_healthz_and_model(server):
    status, health = get(server + "/healthz")
    assert status == 200 and health["status"] == "ok" and health["model"] == "dynamic.onnx"
    status, model = get(server + "/v1/model")
    assert status == 200
    assert model["charset"] == "ab" and model["dynamic_width"] is True
    assert model["metadata"]["htr.blank"] == 2
    assert model["limits"]["max_bytes"] == MAX_BYTES and model["limits"]["max_files"] == MAX_FILES
    assert "CPUExecutionProvider" in model["providers"]


def test_openapi_describes_the_api(server):
    status, spec = get(server + "/openapi.json")
    assert status == 200
    assert {"/v1/recognize", "/v1/model", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/recognize"]["post"]["requestBody"]["content"]
    assert "files" in body["multipart/form-data"]["schema"]["properties"]
    with pytest.raises(urllib.error.HTTPError):  # Swagger UI would need a CDN
        get(server + "/docs")


def test_good_and_bad_files_in_one_request(server):
    files = [
        ("ab.png", encode(draw_word("ab"), ".png")),
        ("notes.txt", b"not an image at all"),
        ("ba.bmp", encode(draw_word("ba"), ".bmp")),
        ("empty.png", b""),
        ("truncated.png", encode(draw_word("ab"), ".png")[:40]),
        ("../../etc/passwd", encode(draw_word("bab"), ".tif")),
    ]
    status, body = recognize(server, files)
    assert status == 200
    assert body["count"] == 6 and body["failed"] == 3
    results = body["results"]
    assert [r["filename"] for r in results] == [name for name, _ in files]
    assert [r["ok"] for r in results] == [True, False, True, False, False, True]
    assert [r.get("text") for r in results] == ["ab", None, "ba", None, None, "bab"]
    first = results[0]
    assert 0.5 < first["confidence"] <= 1 and len(first["char_confidences"]) == 2
    assert first["time_ms"] > 0 and (first["width"], first["height"]) == (80, 32)
    assert first["decoder"] == "greedy" and set(first["alternatives"]) == {"greedy", "beam"}
    assert first["alternatives"]["beam"]["text"] == "ab"
    assert "notes.txt: is not a png, jpg, tif or bmp image" == results[1]["error"]
    assert "empty" in results[3]["error"] and "corrupt or truncated png" in results[4]["error"]


def test_a_nan_output_and_a_raising_decoder_fail_only_their_images(faulty_server):
    black = np.zeros((32, 60), np.uint8)
    files = [("ab.png", encode(draw_word("ab"), ".png")), ("black.png", encode(black, ".png")),
             ("ba.png", encode(draw_word("ba"), ".png")), ("bab.png", encode(draw_word("bab"), ".png"))]
    status, body = recognize(faulty_server, files)
    assert status == 200 and body["failed"] == 2
    results = body["results"]
    assert [r.get("text") for r in results] == ["ab", None, None, "bab"]
    assert results[1]["error"] == "black.png: the model's output has NaN or infinite values"
    assert results[2]["error"] == "ba.png: decoder failed: RuntimeError: injected failure on 'ba'"
    # Asked for beam, "ba" is read; greedy, run beside it for comparison, is left out.
    status, body = recognize(faulty_server, files[2:3], decoder="beam")
    assert status == 200 and body["failed"] == 0
    assert body["results"][0]["text"] == "ba" and set(body["results"][0]["alternatives"]) == {"beam"}
    status, body = recognize(faulty_server, files[:1])
    assert status == 200 and body["results"][0]["text"] == "ab"


def test_beam_decoder_and_jpeg(server):
    status, body = recognize(server, [("w.jpg", encode(draw_word("abba"), ".jpg"))], decoder="beam", beam_width="4")
    assert status == 200 and body["decoder"] == "beam" and body["beam_width"] == 4
    result = body["results"][0]
    assert result["text"] == "abba" and set(result["alternatives"]) == {"beam", "greedy"}


def test_pixel_limits_refuse_an_image_from_its_header(server):
    big = np.full((600, 1000), 255, np.uint8)  # 600,000 pixels > MAX_PIXELS; tiny as a png
    files = [("bomb.png", png_header(30_000, 30_000)), ("big.png", encode(big, ".png")), ("ok.png", encode(draw_word("a"), ".png"))]
    status, body = recognize(server, files)
    assert status == 200
    bomb, large, good = body["results"]
    assert not bomb["ok"] and "30000x30000" in bomb["error"]
    assert not large["ok"] and "600,000" in large["error"]
    assert good["ok"] and good["text"] == "a"


@pytest.mark.parametrize(
    "fields, message",
    [({"decoder": "nonsense"}, "unknown decoder"), ({"beam_width": "0"}, "beam_width"), ({"beam_width": "x"}, "integer")],
)
def test_bad_options_are_400(server, fields, message):
    status, body = recognize(server, [("ab.png", encode(draw_word("ab"), ".png"))], **fields)
    assert status == 400 and message in body["error"]


def test_bad_requests_are_400(server):
    status, body = recognize(server, [])
    assert status == 400 and "no files" in body["error"]
    status, body = post(server + "/v1/recognize", b'{"files": []}', "application/json")
    assert status == 400 and "multipart/form-data" in body["error"]


def test_oversize_body_is_413(server):
    status, body = recognize(server, [("huge.png", b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_BYTES))])
    assert status == 413 and "at most 200,000" in body["error"]
    status, body = get(server + "/healthz")  # still serving
    assert status == 200


def test_too_many_files_is_413(server):
    image = encode(draw_word("b"), ".png")
    status, body = recognize(server, [(f"{i}.png", image) for i in range(MAX_FILES + 1)])
    assert status == 413 and f"at most {MAX_FILES}" in body["error"]


def test_concurrent_requests(server):
    words = ["a", "b", "ab", "ba", "aab", "bba", "abab", "baba"]

    def one(word: str) -> tuple[str, list[str]]:
        files = [(f"{word}-{k}.png", encode(draw_word(word), ".png")) for k in range(3)]
        status, body = recognize(server, files, decoder="beam" if len(word) % 2 else "greedy")
        assert status == 200, body
        return word, [r["text"] for r in body["results"]]

    with ThreadPoolExecutor(4) as pool:
        for word, texts in pool.map(one, words):
            assert texts == [word] * 3


# ---- the page in headless Chromium ------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """A headless Chromium spoken to over --remote-debugging-pipe (fds 3 and 4, JSON + NUL).

    Started with `os.posix_spawn`, which needs no preexec hook and so is safe in a
    process with threads.
    """

    def __init__(self, binary: str, profile: Path, log: Path):
        to_child, from_parent = os.pipe()
        from_child, to_parent = os.pipe()
        # Out of the way of 3 and 4 before duplicating onto them.
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child, to_parent))
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
            "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank",
        ]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, child_in, 3),
            (os.POSIX_SPAWN_DUP2, child_out, 4),
        ]
        self.pid = os.posix_spawn(binary, args, dict(os.environ), file_actions=actions)
        for fd in (to_child, to_parent, child_in, child_out):
            os.close(fd)
        self.write_fd, self.read_fd = from_parent, from_child
        self.buffer = b""
        self.last_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 15) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, session: str, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(session, expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {expression}")

    def open_page(self, url: str, width: int, height: int) -> tuple[str, str]:
        """A new tab of WIDTH x HEIGHT showing URL once its model line has loaded: (session, that line)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Page.enable", {}, session)
        self.call("Page.navigate", {"url": url}, session)
        model = self.wait_for(session, "document.readyState === 'complete' && "
                                       "!document.getElementById('model').textContent.startsWith('loading') && "
                                       "document.getElementById('model').textContent")
        return session, model

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            os.kill(self.pid, signal.SIGKILL)
        for _ in range(50):
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.write_fd)
        os.close(self.read_fd)


def test_page_in_headless_chromium(server, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    good, bad = tmp_path / "word-ab.png", tmp_path / "scan.png"
    word = draw_word("abba")  # drawn at twice the size: the page shows it, the model resizes it to 32 high
    cv2.imwrite(str(good), cv2.resize(word, (word.shape[1] * 2, 64), interpolation=cv2.INTER_NEAREST))
    bad.write_bytes(b"this is not an image")
    browser = DevTools(binary, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        session, model = browser.open_page(server + "/", 1000, 620)
        assert "dynamic.onnx" in model
        node = browser.call("Runtime.evaluate", {"expression": "document.getElementById('files')"}, session)
        browser.call("DOM.setFileInputFiles", {"files": [str(good), str(bad)], "objectId": node["result"]["objectId"]}, session)
        state = browser.wait_for(session, "document.body.dataset.state === 'busy' ? '' : document.body.dataset.state")
        assert state == "done", browser.evaluate(session, "document.getElementById('status').textContent")
        cards = browser.evaluate(session, """[...document.querySelectorAll('.card')].map(c => ({
            name: c.dataset.filename,
            text: c.querySelector('.text') ? c.querySelector('.text').textContent : null,
            error: c.querySelector('.error') ? c.querySelector('.error').textContent : null,
            beam: c.querySelector('.alt-beam') ? c.querySelector('.alt-beam').textContent : null,
            loaded: !!c.querySelector('img') && c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0}))""")
        assert cards[0] == {"name": "word-ab.png", "text": "abba", "error": None, "beam": "abba", "loaded": True}
        assert cards[1]["name"] == "scan.png" and "is not a png, jpg, tif or bmp image" in cards[1]["error"]
        status = browser.evaluate(session, "document.getElementById('status').textContent")
        assert status.startswith("1 of 2 recognised")
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session)
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        (tmp_path / "serve.png").write_bytes(png)
        if os.environ.get("HTR_SERVE_SCREENSHOT"):  # e.g. docs/serve.png for the README
            Path(os.environ["HTR_SERVE_SCREENSHOT"]).write_bytes(png)
    finally:
        browser.close()


# ---- pages: POST /v1/recognize?segment=true and the page view ---------------------------
PAGE_MAX_PIXELS = 2_000_000
LINE_FIELDS = {"path", "line", "bbox", "polygon", "baseline", "text", "confidence"}


@pytest.fixture(scope="module")
def page_server(tiny_models, tmp_path_factory):
    """htr-serve on the tiny model, whose charset has no space (a word model): pages are
    read by the bundled line model (--page-model auto)."""
    yield from _serve(tiny_models["fixed"], tmp_path_factory.mktemp("pages") / "server.log",
                      extra=("--max-bytes", "4000000", "--max-pixels", str(PAGE_MAX_PIXELS)))


#: The file the bundled line model reads on the CPU (htr-serve's default provider).
BUNDLED_LINE = "line.lstm8.onnx"


@pytest.fixture(scope="module")
def synth_page():
    """A synthetic held-out page (~990 x 1400 pixels, 6 to 8 lines) and its ground truth."""
    for module in ("PIL", "wordfreq", "HersheyFonts", "fontTools"):
        pytest.importorskip(module)
    from htr.train.synth_pages import PageGenerator, PageLayout

    page = PageGenerator(split="heldout", seed=5, layout=PageLayout(dpi=120.0, lines=(6, 8))).page(0)
    return page, encode(page.image, ".jpg")


def test_page_model_choice(tiny_models, tmp_path):
    from htr.runtime.engine import Engine
    from htr.runtime.models import bundled_models
    from htr.runtime.serve.service import page_engine_for, reads_lines

    word = Engine(tiny_models["fixed"], threads=1)  # charset "ab": no space, a word model
    line_model = make_tiny_model(tmp_path / "lines.onnx", width=None, spec=tiny_spec(None, "ab "), classes=4)
    lines = Engine(line_model, threads=1)
    assert not reads_lines(word) and reads_lines(lines)
    assert page_engine_for(lines, "auto") is lines
    assert page_engine_for(word, "none") is None and page_engine_for(lines, "none") is None
    assert page_engine_for(word, str(tiny_models["fixed"])) is word  # the served file itself: no second session
    assert page_engine_for(word, str(line_model), threads=1).path == line_model
    if "line" in bundled_models():
        assert page_engine_for(word, "auto", threads=1).path == bundled_models("cpu")["line"]  # on the CPU: line.lstm8.onnx
        # serving a bundled file, pages are read by the line model in the same precision
        full = Engine(bundled_models()["word.fp32"], threads=1)
        assert page_engine_for(full, "auto", threads=1).path == bundled_models()["line.fp32"]


def test_segment_returns_the_jsonl_fields_of_each_line(page_server, synth_page):
    from htr.runtime.engine import Engine
    from htr.runtime.images import decode_image
    from htr.runtime.metrics import edit_distance
    from htr.runtime.models import resolve_model
    from htr.runtime.pages import PageReader
    from htr.runtime.pages_eval import match_lines
    from htr.runtime.pipeline import Recognizer
    from htr.runtime.serialize import write_jsonl
    from htr.runtime.serve.service import RecognitionService

    page, jpg = synth_page
    blank = encode(np.full((800, 600), 230, np.uint8), ".png")
    body, content_type = multipart([("page.jpg", jpg), ("blank.png", blank), ("bad.jpg", b"not an image")])
    status, doc = post(page_server + "/v1/recognize?segment=true", body, content_type)
    assert status == 200, doc
    assert doc["model"] == BUNDLED_LINE and doc["segment"] is True
    assert (doc["count"], doc["failed"]) == (3, 1)
    first, empty, bad = doc["results"]
    h, w = page.image.shape
    assert first["ok"] and (first["width"], first["height"]) == (w, h)
    lines = first["lines"]
    assert doc["lines"] == len(lines) and abs(len(lines) - len(page.lines)) <= 1
    for i, line in enumerate(lines):
        assert set(line) == LINE_FIELDS and line["path"] == "page.jpg" and line["line"] == i
        x0, y0, x1, y1 = line["bbox"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert len(line["polygon"]) >= 4 and len(line["baseline"]) >= 2 and 0 <= line["confidence"] <= 1
    middles = [(ln["bbox"][1] + ln["bbox"][3]) / 2 for ln in lines]
    assert middles == sorted(middles)  # reading order: top to bottom
    found = [[tuple(p) for p in ln["polygon"]] for ln in lines]
    assert match_lines(found, [t.polygon for t in page.lines], w, h).f1 >= 0.9
    reference = " ".join(t.text for t in page.lines)
    text = " ".join(ln["text"] for ln in lines)
    assert edit_distance(reference, text) / len(reference) < 0.4  # the line model read them
    # exactly what htr-run --segment --format jsonl writes for this page
    engine = Engine(resolve_model("line"), threads=1)
    greedy = RecognitionService(engine).decoder("greedy")
    expected = PageReader(Recognizer(engine, greedy)).read_image(decode_image(jpg, "page.jpg"), "page.jpg")
    assert lines == [json.loads(record) for record in write_jsonl(expected).splitlines()]
    assert empty == {**empty, "ok": True, "lines": [], "width": 600, "height": 800}
    assert bad == {"filename": "bad.jpg", "ok": False, "error": "bad.jpg: is not a png, jpg, tif or bmp image"}


def test_segment_keeps_the_limits_and_options(page_server):
    side = int(PAGE_MAX_PIXELS ** 0.5) + 10
    huge = encode(np.full((side, side), 235, np.uint8), ".png")
    status, doc = recognize(page_server, [("huge.png", huge)], segment="true")
    assert status == 200 and doc["failed"] == 1
    assert doc["results"][0]["error"].startswith(f"huge.png: is {side}x{side} pixels")
    status, doc = recognize(page_server, [("p.png", huge)], segment="true", decoder="nope")
    assert status == 400 and "unknown decoder" in doc["error"]
    status, doc = recognize(page_server, [("p.png", huge)], segment="maybe")
    assert status == 400 and doc["error"] == "segment must be true or false, got 'maybe'"
    status, info = get(page_server + "/v1/model")
    assert info["page_model"] == BUNDLED_LINE and info["file"] == "fixed.onnx"


def test_pages_are_read_off_the_event_loop(page_server, synth_page):
    """While a request of six pages is read, /healthz still answers promptly."""
    _, jpg = synth_page
    with ThreadPoolExecutor(1) as pool:
        begun = time.monotonic()
        pages = pool.submit(recognize, page_server, [(f"p{i}.jpg", jpg) for i in range(MAX_FILES)], segment="true")
        waits = []  # how long each /healthz asked while the pages were being read took
        while not pages.done():
            start = time.monotonic()
            assert get(page_server + "/healthz")[0] == 200
            waits.append(time.monotonic() - start)
            time.sleep(0.02)
        status, doc = pages.result()
        took = time.monotonic() - begun
    assert status == 200 and doc["failed"] == 0 and doc["count"] == MAX_FILES
    assert len(waits) >= 2 and max(waits) < took / 2, (waits, took)  # blocked, one would wait for the pages


def test_segment_without_a_page_model_is_409(tiny_models, tmp_path):
    for url in _serve(tiny_models["fixed"], tmp_path / "server.log", extra=("--page-model", "none")):
        status, doc = recognize(url, [("page.png", encode(draw_word("ab"), ".png"))], segment="true")
        assert status == 409 and "\n" not in doc["error"]
        assert doc["error"].startswith("segment=true needs a model that reads lines") and "--page-model" in doc["error"]
        assert get(url + "/v1/model")[1]["page_model"] is None
        status, doc = recognize(url, [("ab.png", encode(draw_word("ab"), ".png"))])  # words still work
        assert status == 200 and doc["results"][0]["text"] == "ab"


def test_page_view_in_headless_chromium(page_server, synth_page, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    _, jpg = synth_page
    good, bad = tmp_path / "page.jpg", tmp_path / "<img src=x onerror=alert(1)>.jpg"
    good.write_bytes(jpg)
    bad.write_bytes(b"not an image")
    status, doc = recognize(page_server, [("page.jpg", jpg)], segment="true")
    assert status == 200
    expected = [ln["text"] for ln in doc["results"][0]["lines"]]
    assert len(expected) >= 5
    browser = DevTools(binary, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        session, model = browser.open_page(page_server + "/", 1100, 900)
        assert f"pages: {BUNDLED_LINE}" in model
        assert browser.evaluate(session, "document.getElementById('segment').click(); "
                                         "document.getElementById('segment').checked") is True
        node = browser.call("Runtime.evaluate", {"expression": "document.getElementById('files')"}, session)
        browser.call("DOM.setFileInputFiles", {"files": [str(good), str(bad)], "objectId": node["result"]["objectId"]}, session)
        browser.wait_for(session, "document.body.dataset.state === 'done' && "
                                  "[...document.images].every(i => i.complete)")
        cards = browser.evaluate(session, """[...document.querySelectorAll('.card.page')].map(c => {
            const img = c.querySelector('img'), svg = c.querySelector('svg.overlay');
            const box = (n) => { const r = n.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
            return {name: c.querySelector('.name').textContent, nameTags: c.querySelector('.name').children.length,
                    polygons: svg ? svg.querySelectorAll('polygon').length : null,
                    viewBox: svg ? svg.getAttribute('viewBox') : null,
                    texts: [...c.querySelectorAll('ol.lines li .line-text')].map(t => t.textContent),
                    img: img && img.naturalWidth ? box(img) : null, svg: svg ? box(svg) : null,
                    error: c.querySelector('.error') ? c.querySelector('.error').textContent : null}; })""")
        assert len(cards) == 2
        page_card, bad_card = cards
        assert page_card["polygons"] == len(expected) and page_card["texts"] == expected
        assert page_card["viewBox"] == f"0 0 {doc['results'][0]['width']} {doc['results'][0]['height']}"
        assert page_card["img"] is not None and page_card["img"][2] > 300  # shown, scaled to the column
        assert np.allclose(page_card["svg"], page_card["img"], atol=1)  # the overlay covers the image exactly
        assert bad_card["name"] == bad.name and bad_card["nameTags"] == 0  # a name is text, never markup
        assert browser.evaluate(session, "document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert bad_card["error"] == f"{bad.name}: is not a png, jpg, tif or bmp image" and bad_card["polygons"] is None
        status_text = browser.evaluate(session, "document.getElementById('status').textContent")
        assert status_text.startswith(f"1 of 2 pages read, {len(expected)} lines")
        # hovering a line's text highlights its polygon; a click keeps it
        active = browser.evaluate(session, """(() => {
            const items = document.querySelectorAll('.card.page ol.lines li');
            items[1].dispatchEvent(new MouseEvent('mouseenter'));
            const hovered = [...document.querySelectorAll('.card.page polygon')].map(p => p.classList.contains('active'));
            items[1].dispatchEvent(new MouseEvent('mouseleave'));
            items[2].dispatchEvent(new MouseEvent('click'));
            items[2].dispatchEvent(new MouseEvent('mouseleave'));
            const clicked = [...document.querySelectorAll('.card.page polygon')].map(p => p.classList.contains('active'));
            return {hovered, clicked};
        })()""")
        assert [i for i, on in enumerate(active["hovered"]) if on] == [1]
        assert [i for i, on in enumerate(active["clicked"]) if on] == [2]
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session)
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        (tmp_path / "serve-page.png").write_bytes(png)
        if os.environ.get("HTR_SERVE_PAGE_SCREENSHOT"):  # the README's docs/serve-page.jpg is this, as JPEG
            Path(os.environ["HTR_SERVE_PAGE_SCREENSHOT"]).write_bytes(png)
    finally:
        browser.close()
