"""htr-run as a real process on hostile paths: FIFOs, devices, odd names, outputs over inputs."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from runtime_fixtures import draw_word

HTR_RUN = str(Path(sys.executable).with_name("htr-run"))


def _run(args: list, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([HTR_RUN, *map(os.fsdecode, args)], capture_output=True, timeout=timeout, **kw)


def _errors(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode("utf-8", "backslashreplace").splitlines() if ": error:" in line]


@pytest.fixture()
def odd_folder(tmp_path):
    """Two good images and every kind of non-regular entry with an image suffix."""
    root = tmp_path / "odd"
    root.mkdir()
    cv2.imwrite(str(root / "1_good.png"), draw_word("ab"))
    cv2.imwrite(str(root / "9_good.png"), draw_word("ba"))
    os.mkfifo(root / "2_fifo.png")
    (root / "3_folder.png").mkdir()
    os.symlink(root / "missing.png", root / "4_dangling.png")
    os.symlink(root / "5_loop.png", root / "5_loop.png")
    os.symlink("/dev/zero", root / "6_zero.png")
    return root


def test_non_regular_files_in_a_folder_each_get_one_line_and_nothing_blocks(odd_folder, tiny_models):
    result = _run([odd_folder, "-m", tiny_models["dynamic"]], timeout=60)
    errors = _errors(result.stderr)
    assert result.returncode == 1
    assert result.stdout.decode().splitlines() == [f"{odd_folder / '1_good.png'}\tab", f"{odd_folder / '9_good.png'}\tba"]
    expected = {
        "2_fifo.png": "is a FIFO (named pipe), expected an image file",
        "3_folder.png": "is a folder, expected an image file",
        "4_dangling.png": "is a dangling symbolic link",
        "5_loop.png": "is a symbolic link loop",
        "6_zero.png": "is a character device, expected an image file",
    }
    assert len(errors) == len(expected), errors
    for line, (name, message) in zip(errors, expected.items()):
        assert f"{odd_folder / name}: {message}" in line, line


@pytest.mark.parametrize("name", ["2_fifo.png", "6_zero.png"])
def test_a_fifo_or_dev_zero_named_on_the_command_line_is_refused_at_once(odd_folder, tiny_models, name):
    begun = time.perf_counter()
    result = _run([odd_folder / name, odd_folder / "1_good.png", "-m", tiny_models["fixed"]], timeout=30)
    assert time.perf_counter() - begun < 30
    assert result.returncode == 1
    assert len(_errors(result.stderr)) == 1 and "expected an image file" in _errors(result.stderr)[0]
    assert result.stdout.decode() == f"{odd_folder / '1_good.png'}\tab\n"


def test_a_fifo_swapped_in_after_listing_is_not_waited_on(tmp_path):
    from htr.runtime.errors import ImageError
    from htr.runtime.images import load_image

    os.mkfifo(tmp_path / "late.png")
    with pytest.raises(ImageError, match="late.png: is a FIFO"):
        load_image(tmp_path / "late.png")  # opened O_NONBLOCK: returns at once, no writer needed


@pytest.fixture()
def named_folder(tmp_path):
    """Images whose names hold a tab, a newline, a CR, a comma and quote, and a non-UTF-8 byte."""
    root = tmp_path / "names"
    root.mkdir()
    names = [b"a\tb.png", b"c\nd.png", b"e\rf.png", b'g,"h".png', b"i\xffj.png", b"k\\l.png"]
    ok, buf = cv2.imencode(".png", draw_word("ab"))
    for name in names:
        with open(os.path.join(os.fsencode(root), name), "wb") as fh:
            fh.write(buf.tobytes())
    return root, [os.path.join(os.fsencode(root), n) for n in sorted(names)]


def test_odd_file_names_are_kept_byte_exact_in_every_format(named_folder, tiny_models, tmp_path):
    root, paths = named_folder
    model = tiny_models["fixed"]
    for fmt in ("txt", "tsv", "csv", "jsonl"):
        for to_file in (False, True):
            out = tmp_path / f"out.{fmt}"
            args = [root, "-m", model, "-f", fmt] + (["-o", out] if to_file else [])
            result = _run(args)
            assert result.returncode == 0, result.stderr
            data = out.read_bytes() if to_file else result.stdout
            if fmt == "jsonl":
                records = [json.loads(line) for line in data.decode("utf-8").splitlines()]  # valid UTF-8
                got = [base64.b64decode(r["path_bytes"]) if "path_bytes" in r else r["path"].encode() for r in records]
                assert [r["text"] for r in records] == ["ab"] * len(paths)
            elif fmt == "csv":
                rows = list(csv.reader(io.StringIO(data.decode("utf-8", "surrogateescape"), newline="")))
                assert rows[0] == ["path", "text", "confidence"] and len(rows) == len(paths) + 1
                got = [os.fsencode(r[0]) for r in rows[1:]]
            else:
                lines = data.split(b"\n")[:-1]
                lines = lines[1:] if fmt == "tsv" else lines
                assert len(lines) == len(paths), lines
                fields = [line.split(b"\t") for line in lines]
                assert all(len(f) == (3 if fmt == "tsv" else 2) for f in fields)
                unescape = {b"\\t": b"\t", b"\\n": b"\n", b"\\r": b"\r", b"\\\\": b"\\"}
                got = []
                for f in fields:
                    raw, out_bytes, i = f[0], b"", 0
                    while i < len(raw):
                        pair = raw[i : i + 2]
                        if pair in unescape:
                            out_bytes, i = out_bytes + unescape[pair], i + 2
                        else:
                            out_bytes, i = out_bytes + raw[i : i + 1], i + 1
                    got.append(out_bytes)
            assert got == paths, (fmt, to_file, got)


def test_output_over_an_input_is_refused_and_the_input_kept(tmp_path, tiny_models):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), draw_word("ab"))
    before = image.read_bytes()
    os.link(image, tmp_path / "hard.png")
    for output in (image, tmp_path / "hard.png", tmp_path / "." / "a.png"):
        result = _run([image, "-m", tiny_models["fixed"], "-o", output])
        assert result.returncode == 2
        assert _errors(result.stderr) == [f"htr-run: error: {output}: is an input ({image}); results are never written over an input, choose another --output"]
        assert image.read_bytes() == before
    result = _run([tmp_path, "-m", tiny_models["fixed"], "-o", tmp_path / "hard.png"])
    assert result.returncode == 2 and image.read_bytes() == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_disk_full_is_one_line_and_exit_1(tmp_path, tiny_models):
    cv2.imwrite(str(tmp_path / "a.png"), draw_word("ab"))
    for args in (["-o", "/dev/full"], []):
        with open("/dev/full", "wb") as full:
            result = subprocess.run(
                [HTR_RUN, str(tmp_path / "a.png"), "-m", str(tiny_models["fixed"]), *args],
                stdout=full if not args else subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
            )
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 1, lines
        name = "/dev/full" if args else "stdout"
        assert lines == [f"htr-run: error: {name}: cannot write results (No space left on device)"], lines


def test_ctrl_c_while_starting_says_so_honestly(tmp_path, tiny_models):
    cv2.imwrite(str(tmp_path / "a.png"), draw_word("ab"))
    # Python itself starts in about 100 ms, before any handler of ours can exist; from
    # then until the first image is read a Ctrl-C gets one honest line.
    caught = []
    for delay in (0.2, 0.35, 0.5, 0.8, 1.2):
        proc = subprocess.Popen(
            [HTR_RUN, str(tmp_path / "a.png"), "-m", str(tiny_models["fixed"])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        text = err.decode()
        if proc.returncode == -signal.SIGINT and not text:
            continue  # the signal came before the interpreter itself could handle it (a loaded machine)
        assert "not installed" not in text and "Traceback" not in text, (delay, text)
        if proc.returncode == 130 and not out:
            assert text.strip().splitlines()[-1].endswith("interrupted while starting; nothing was read or written"), text
            caught.append(delay)
        else:  # it had already finished or reached the main loop: results and an honest count
            # (a signal during the interpreter's own exit, after the summary, ends it with -SIGINT)
            finished = proc.returncode == -signal.SIGINT and " images, " in text
            assert proc.returncode in (0, 130) or finished, (delay, proc.returncode, text)
    assert caught, "no Ctrl-C landed while starting: the test proved nothing"
