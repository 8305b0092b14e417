"""Image bombs and odd files: sizes refused from the header, memory bounded, one line each."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import draw_word

from htr.runtime.errors import ImageError
from htr.runtime.images import DecodeBudget, decode_image, read_header, to_grey

HTR_RUN = str(Path(sys.executable).with_name("htr-run"))


def _zlib_zeros(total: int) -> bytes:
    """A zlib stream of `total` zero bytes, built from one compressed 16 MiB block repeated.

    After a full flush a deflate stream is byte-aligned and forgets its history, so the
    compressed block can be repeated as is; only the Adler-32 runs over every byte.
    """
    size = 1 << 24
    block = bytes(size)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    repeated = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(total, size)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(bytes(rest), adler)
    body = repeated * full + tail.compress(bytes(rest)) + tail.flush()
    return b"\x78\xda" + body + struct.pack(">I", adler)


def png_stream(width: int, height: int, depth: int = 16, colour: int = 6) -> bytes:
    """A complete, valid PNG of blank (all-zero) rows that is never held decoded here."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    idat = _zlib_zeros(height * (1 + width * channels * depth // 8))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "suffix, image, channels, bps",
    [
        (".png", np.zeros((37, 91), np.uint16), 1, 2),
        (".png", np.zeros((37, 91, 4), np.uint8), 4, 1),
        (".jpg", np.zeros((37, 91, 3), np.uint8), 3, 1),
        (".tif", np.zeros((37, 91, 3), np.uint16), 4, 2),
        (".bmp", np.zeros((37, 91, 4), np.uint8), 4, 1),
        (".bmp", np.zeros((37, 91), np.uint8), 3, 1),
    ],
)
def test_header_gives_size_and_layout_of_real_files(suffix, image, channels, bps):
    ok, buf = cv2.imencode(suffix, image)
    header = read_header(buf.tobytes())
    assert (header.width, header.height) == (91, 37)
    assert (header.channels, header.bytes_per_sample) == (channels, bps)


def _bomb_headers() -> dict[str, bytes]:
    """Headers (then nothing: no pixel data) claiming 30000 x 30000 pixels."""
    png = png_stream(8, 8)[:33].replace(struct.pack(">II", 8, 8), struct.pack(">II", 30_000, 30_000))
    jpg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 30_000, 30_000) + b"\x03" + bytes(9)
    tif = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + struct.pack("<HHII", 256, 4, 1, 30_000) + struct.pack("<HHII", 257, 4, 1, 30_000) + bytes(4)
    bmp = b"BM" + bytes(12) + struct.pack("<IiiHH", 40, 30_000, -30_000, 1, 24) + bytes(24)
    return {"png": png, "jpg": jpg, "tif": tif, "bmp": bmp}


@pytest.mark.parametrize("kind", ["png", "jpg", "tif", "bmp"])
def test_a_huge_size_is_refused_from_the_header_before_decoding(kind):
    data = _bomb_headers()[kind]
    assert read_header(data).pixels == 900_000_000
    # No pixel data follows: a decode would say "corrupt"; the header check speaks first.
    with pytest.raises(ImageError, match=r"bomb\.x: is 30000x30000 pixels, expected at most 20000 on each side"):
        decode_image(data, "bomb.x")
    small = data.replace(struct.pack(">H", 30_000) * 2, struct.pack(">H", 9_000) * 2)
    small = small.replace(struct.pack(">I", 30_000) * 2, struct.pack(">I", 9_000) * 2)
    small = small.replace(struct.pack("<I", 30_000), struct.pack("<I", 9_000)).replace(struct.pack("<i", -30_000), struct.pack("<i", -9_000))
    with pytest.raises(ImageError, match=r"is 9000x9000 pixels \(81,000,000\), expected at most 64,000,000 pixels"):
        decode_image(small, "bomb.x")


def test_a_header_cut_short_is_one_line():
    with pytest.raises(ImageError, match=r"cut\.png: is a corrupt or truncated png image \(no size in its header\)"):
        decode_image(b"\x89PNG\r\n\x1a\n\x00\x00", "cut.png")


def test_sixteen_bit_grey_is_the_same_in_strips_as_whole():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65536, size=(2100, 700, 4), dtype=np.uint16)  # > 1 Mpx: converted in strips
    expected = np.round(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    grey = cv2.cvtColor(expected[:, :, :3], cv2.COLOR_BGR2GRAY)
    a = expected[:, :, 3].astype(np.float32) / 255.0
    expected = np.round(grey * a + 255.0 * (1.0 - a)).astype(np.uint8)
    np.testing.assert_array_equal(to_grey(image), expected)


def test_decode_budget_holds_concurrent_decodes_to_its_limit():
    budget = DecodeBudget(100)
    peak, used, lock = [0], [0], threading.Lock()

    def work():
        with budget.reserve(60):
            with lock:
                used[0] += 60
                peak[0] = max(peak[0], used[0])
            time.sleep(0.05)
            with lock:
                used[0] -= 60

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 60  # two at once would be 120 > 100
    with pytest.raises(ImageError, match="x.png: would take .* MiB to decode"):
        with budget.reserve(101, "x.png"):
            pass


def _peak_rss_mib(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `cmd` from a fresh Python parent and read its children's peak RSS (getrusage)."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps({'rc': p.returncode, 'out': p.stdout, 'err': p.stderr,"
        " 'kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, timeout=600)
    doc = json.loads(done.stdout)
    return subprocess.CompletedProcess(cmd, doc["rc"], doc["out"], doc["err"]), doc["kib"] / 1024


def test_htr_run_on_image_bombs_stays_under_1_5_gb_and_keeps_the_good_image(tmp_path, tiny_models):
    folder = tmp_path / "bombs"
    folder.mkdir()
    (folder / "a_bomb_20000_rgba16.png").write_bytes(png_stream(20_000, 20_000))  # 3.2 GB decoded
    for k in (1, 2):
        (folder / f"b_bomb_10000_{k}.png").write_bytes(png_stream(10_000, 10_000, colour=2))
    # Within every limit, 16-bit RGBA: 584 MiB to decode each (OpenCV holds two copies),
    # so the 1 GiB budget lets one decode at a time; no float copy of each channel is made.
    for k in (1, 2):
        (folder / f"c_big_{k}.png").write_bytes(png_stream(6_000, 6_000))
    cv2.imwrite(str(folder / "d_word.png"), draw_word("ab"))
    result, peak = _peak_rss_mib([HTR_RUN, str(folder), "-m", str(tiny_models["dynamic"])])
    errors = [line for line in result.stderr.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 3 and all(len(e) < 300 for e in errors), errors
    assert "a_bomb_20000_rgba16.png: is 20000x20000 pixels" in errors[0]
    assert "b_bomb_10000_1.png: is 10000x10000 pixels (100,000,000), expected at most 64,000,000" in errors[1]
    lines = result.stdout.splitlines()
    assert lines[-1] == f"{folder / 'd_word.png'}\tab"
    assert [line.split("\t")[0] for line in lines] == [str(folder / f"c_big_{k}.png") for k in (1, 2)] + [str(folder / "d_word.png")]
    print(f"htr-run peak RSS on the bomb folder: {peak:.0f} MiB")
    assert peak < 1536, f"peak RSS {peak:.0f} MiB"
