"""Mixed hostile load against a real `htr-serve` on loopback.

Starts `python -m htr.runtime.serve.cli` (the bundled word model unless --model), then
runs ROUNDS rounds of REQUESTS requests each, CONCURRENCY at a time, drawn (seeded) from:

    good      1-3 word images (png/jpg)                   -> 200, every result ok
    mixed     good images with junk, truncated and bomb    -> 200, per-file errors, good ones ok
    oversize  a body over --max-bytes                      -> 413
    toomany   more files than --max-files                  -> 413
    notform   a JSON body                                  -> 400
    stalled   headers and part of the body, then silence   -> 408 after --body-timeout, closed

An error "of the server's own making" is any 5xx, a dropped or reset connection, or a
status or result other than the one listed above for the payload. Reported: p50/p95
latency per kind (stalled requests excluded from the overall figures: their latency is the
timeout), those errors (must be 0), and the server's RSS before and after each round.

    python benchmarks/bench_serve_load.py [--requests 1000 --rounds 3 --concurrency 8]

writes benchmarks/reports/serve-load.json and serve-load.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_facts import busy_cpus, cpu_model  # noqa: E402

REPORTS = Path(__file__).resolve().parent / "reports"
MAX_BYTES = 1_000_000
MAX_FILES = 8
BODY_TIMEOUT = 2.0
KINDS = {"good": 0.55, "mixed": 0.2, "oversize": 0.07, "toomany": 0.07, "notform": 0.06, "stalled": 0.05}


def word_image(rng: random.Random) -> np.ndarray:
    """A dark scribble of strokes on white, 32-64 px high: something for the model to read."""
    h, w = rng.randint(32, 64), rng.randint(64, 256)
    image = np.full((h, w), 255, np.uint8)
    x = 4
    while x < w - 12:
        cv2.putText(image, rng.choice("abcdefghij"), (x, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2, cv2.LINE_AA)
        x += 16
    return image


def encode(image: np.ndarray, suffix: str) -> bytes:
    return cv2.imencode(suffix, image)[1].tobytes()


def bomb_header() -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 30_000, 30_000, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{n}"\r\n\r\n'.encode() + d + b"\r\n"
        for n, d in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def make_payload(kind: str, rng: random.Random, pool: list[bytes]) -> dict:
    if kind == "good":
        files = [(f"w{i}.png", rng.choice(pool)) for i in range(rng.randint(1, 3))]
        body, ctype = multipart(files)
        return {"kind": kind, "body": body, "ctype": ctype, "expect": 200, "ok": [True] * len(files)}
    if kind == "mixed":
        good = rng.choice(pool)
        files = [("good.png", good), ("junk.png", b"not an image at all"), ("cut.png", good[: len(good) // 2]),
                 ("bomb.png", bomb_header()), ("empty.png", b"")]
        rng.shuffle(files)
        body, ctype = multipart(files)
        return {"kind": kind, "body": body, "ctype": ctype, "expect": 200, "ok": [n == "good.png" for n, _ in files]}
    if kind == "oversize":
        body, ctype = multipart([("big.png", b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_BYTES))])
        return {"kind": kind, "body": body, "ctype": ctype, "expect": 413}
    if kind == "toomany":
        body, ctype = multipart([(f"{i}.png", pool[0]) for i in range(MAX_FILES + 1 + rng.randint(0, 60))])
        return {"kind": kind, "body": body, "ctype": ctype, "expect": 413}
    if kind == "notform":
        return {"kind": kind, "body": b'{"files": []}', "ctype": "application/json", "expect": 400}
    body, ctype = multipart([("w.png", rng.choice(pool))])
    return {"kind": "stalled", "body": body, "ctype": ctype, "expect": 408, "stall": True}


def send(port: int, payload: dict) -> dict:
    """One request on its own connection; what came back and how long it took."""
    body = payload["body"]
    head = (f"POST /v1/recognize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {payload['ctype']}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    begun = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            if payload.get("stall"):
                sock.sendall(head + body[: len(body) // 3])
            else:
                try:
                    sock.sendall(head + body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a 413 may come (and the socket close) before the whole body is sent
            data = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
    except OSError as err:
        return {"status": None, "error": f"{type(err).__name__}: {err}", "seconds": time.perf_counter() - begun}
    seconds = time.perf_counter() - begun
    header, _, rest = data.partition(b"\r\n\r\n")
    try:
        status = int(header.split()[1])
    except (IndexError, ValueError):
        return {"status": None, "error": f"no HTTP response ({len(data)} bytes)", "seconds": seconds}
    return {"status": status, "body": rest, "seconds": seconds}


def judge(payload: dict, answer: dict) -> str | None:
    """Why this answer is an error of the server's own making, or None."""
    if answer["status"] is None:
        return answer["error"]
    if answer["status"] >= 500:
        return f"HTTP {answer['status']}"
    if answer["status"] != payload["expect"]:
        return f"HTTP {answer['status']} for {payload['kind']} (expected {payload['expect']})"
    if payload["expect"] == 200:
        try:
            results = json.loads(answer["body"])["results"]
        except (ValueError, KeyError):
            return "200 without a JSON result list"
        got = [r.get("ok") for r in results]
        if got != payload["ok"]:
            return f"results ok {got}, expected {payload['ok']}"
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def start_server(model: str, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "htr.runtime.serve.cli", "--model", model, "--port", str(port),
           "--max-bytes", str(MAX_BYTES), "--max-files", str(MAX_FILES), "--body-timeout", str(BODY_TIMEOUT),
           "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"htr-serve exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("htr-serve did not start within 60 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="word")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPORTS / "serve-load")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    pool = [encode(word_image(rng), rng.choice([".png", ".jpg"])) for _ in range(40)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = Path(tempfile.gettempdir()) / "htr-serve-load.server.log"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    busy = busy_cpus()
    proc = start_server(args.model, port, log)
    rounds = []
    try:
        for payload in [make_payload("good", rng, pool) for _ in range(20)]:  # warm-up
            send(port, payload)
        rss_start = rss_mib(proc.pid)
        for number in range(1, args.rounds + 1):
            kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=args.requests)
            payloads = [make_payload(k, rng, pool) for k in kinds]
            rss_before = rss_mib(proc.pid)
            begun = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool_x:
                answers = list(pool_x.map(lambda p: send(port, p), payloads))
            wall = time.perf_counter() - begun
            by_kind: dict[str, list[float]] = defaultdict(list)
            problems: Counter = Counter()
            for payload, answer in zip(payloads, answers):
                by_kind[payload["kind"]].append(answer["seconds"])
                why = judge(payload, answer)
                if why:
                    problems[why] += 1
            answered = [a["seconds"] for p, a in zip(payloads, answers) if p["kind"] != "stalled"]
            rounds.append({
                "round": number,
                "requests": len(payloads),
                "wall_s": round(wall, 2),
                "requests_per_s": round(len(payloads) / wall, 1),
                "p50_ms": round(1000 * statistics.median(answered), 1),
                "p95_ms": round(1000 * percentile(answered, 0.95), 1),
                "by_kind": {
                    k: {"n": len(v), "p50_ms": round(1000 * statistics.median(v), 1), "p95_ms": round(1000 * percentile(v, 0.95), 1)}
                    for k, v in sorted(by_kind.items())
                },
                "server_errors": sum(problems.values()),
                "error_kinds": dict(problems.most_common(10)),
                "rss_before_mib": round(rss_before, 1),
                "rss_after_mib": round(rss_mib(proc.pid), 1),
            })
            r = rounds[-1]
            print(f"round {number}: {r['requests']} requests in {r['wall_s']} s, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
                  f"server errors {r['server_errors']}, RSS {r['rss_before_mib']} -> {r['rss_after_mib']} MiB", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    log_text = log.read_text(errors="replace")
    report = {
        "benchmark": "bench_serve_load",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "cpus_busy_with_other_work": busy},
        "model": args.model,
        "concurrency": args.concurrency,
        "limits": {"max_bytes": MAX_BYTES, "max_files": MAX_FILES, "body_timeout_s": BODY_TIMEOUT},
        "mix": KINDS,
        "rss_start_mib": round(rss_start, 1),
        "rounds": rounds,
        "server_errors_total": sum(r["server_errors"] for r in rounds),
        "tracebacks_in_server_log": log_text.count("Traceback"),
    }
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# htr-serve under mixed hostile load",
        "",
        f"{report['date']}; {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{busy} CPUs busy with other work when it started; model `{args.model}`, {args.concurrency} concurrent clients, "
        f"limits {MAX_BYTES:,} bytes, {MAX_FILES} files, body timeout {BODY_TIMEOUT:g} s.",
        "",
        "| round | requests | wall s | req/s | p50 ms | p95 ms | server errors | RSS before MiB | RSS after MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rounds:
        lines.append(f"| {r['round']} | {r['requests']} | {r['wall_s']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['server_errors']} | {r['rss_before_mib']} | {r['rss_after_mib']} |")
    lines += ["", "p50/p95 exclude stalled uploads (their latency is the body timeout). Per kind, last round:", "",
              "| kind | n | p50 ms | p95 ms |", "| --- | --- | --- | --- |"]
    for k, v in rounds[-1]["by_kind"].items():
        lines.append(f"| {k} | {v['n']} | {v['p50_ms']} | {v['p95_ms']} |")
    lines += ["", f"Server RSS after warm-up {report['rss_start_mib']} MiB; tracebacks in the server log: "
              f"{report['tracebacks_in_server_log']}; errors of the server's own making: {report['server_errors_total']}.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out.with_suffix('.json')} and .md")
    return 1 if report["server_errors_total"] or report["tracebacks_in_server_log"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
