"""htr-run on one machine vs `--engine ray` (1 and 2 workers, and a simulated 2-node cluster).

    python benchmarks/bench_scale.py [--images DIR] [--count 10000] [--model word]

Writes word images with `htr-synth DIR --kind words --count N --split heldout --seed 99`
(unless DIR exists: then its images, recursively), then runs, as real processes, each once:

- local:      htr-run DIR -r -f jsonl -o local.jsonl
- ray-1, ray-2: the same with --engine ray --workers 1|2 (a local Ray started by the command)
- two-nodes:  `ray start --head --num-cpus 1` and `ray start --address ... --num-cpus 1` on this
              machine (two raylets), then htr-run ... --engine ray --address HEAD --workers 2
              (one 1-CPU actor fits each node, so each node runs one)

and reports wall time (the whole command: Python start, model load, Ray start), the rate
htr-run prints (images / recognition time, without Ray's start), Ray's overhead per image
against the local run measured in the same run, and whether each output file is byte for
byte the local one. Report: benchmarks/reports/scale.md and scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine_facts import busy_cpus, cpu_model  # noqa: E402

BIN = Path(sys.executable).parent
REPORTS = Path(__file__).parent / "reports"
RATE = re.compile(r"htr-run: (\d+) images, (\d+) failed, ([\d.]+) images/s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def htr_run(images: Path, out: Path, model: str, *extra: str) -> dict:
    cmd = [str(BIN / "htr-run"), str(images), "-r", "-m", model, "-f", "jsonl", "-o", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = RATE.search(proc.stderr)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"command": " ".join(cmd[0:1] + [c for c in cmd[1:]]), "wall_s": round(wall, 2),
            "images": int(found[1]), "failed": int(found[2]), "rate": float(found[3]),
            "summary": [ln for ln in proc.stderr.splitlines() if RATE.search(ln)][0]}


def start_node(args: list[str], temp: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own process group (stopped by that group's id)."""
    log = open(temp / f"node-{len(list(temp.glob('node-*')))}.log", "w")
    return subprocess.Popen([str(BIN / "ray"), "start", *args, "--block"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def stop_node(proc: subprocess.Popen) -> None:
    """SIGTERM to the node's process group, then SIGKILL to whatever of it is left."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def wait_for_nodes(address: str, count: int, timeout: float = 180) -> list[dict]:
    code = (f"import ray, json; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(json.dumps([{'cpus': n['Resources'].get('CPU'), 'id': n['NodeID'][:8]} "
            "for n in ray.nodes() if n['Alive']]))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode == 0:
            nodes = json.loads(out.stdout.strip().splitlines()[-1])
            if len(nodes) >= count:
                return nodes
        time.sleep(2)
    raise SystemExit(f"the simulated cluster at {address} did not get {count} nodes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=Path(tempfile.gettempdir()) / "htr-bench-scale-words")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--model", default="word")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    if not args.images.exists():
        subprocess.run([str(BIN / "htr-synth"), str(args.images), "--kind", "words", "--count", str(args.count),
                        "--split", "heldout", "--seed", "99"], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    if (Path.home() / ".ray" / "auth_token").exists():  # `ray start` clusters check Ray's token
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    load_before = busy_cpus(2.0)
    runs: dict[str, dict] = {}
    b = ["-b", str(args.batch_size)]
    runs["local"] = htr_run(args.images, work / "local.jsonl", args.model, *b)
    runs["ray-1"] = htr_run(args.images, work / "ray-1.jsonl", args.model, *b, "--engine", "ray", "--workers", "1")
    runs["ray-2"] = htr_run(args.images, work / "ray-2.jsonl", args.model, *b, "--engine", "ray", "--workers", "2")

    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start_node(["--head", "--num-cpus", "1", "--port", str(port), "--include-dashboard=false",
                       "--node-ip-address", "127.0.0.1"], work)
    nodes: list[dict] = []
    worker = None
    try:
        wait_for_nodes(address, 1)
        worker = start_node(["--address", address, "--num-cpus", "1", "--node-ip-address", "127.0.0.1"], work)
        nodes = wait_for_nodes(address, 2)
        runs["two-nodes"] = htr_run(args.images, work / "two-nodes.jsonl", args.model, *b, "--engine", "ray",
                                    "--address", address, "--workers", "2", "--threads-per-worker", "1")
    finally:
        for proc in (worker, head):
            if proc is not None:
                stop_node(proc)
    load_after = busy_cpus(2.0)

    local = runs["local"]
    reference = (work / "local.jsonl").read_bytes()
    for name, run in runs.items():
        run["same_output_as_local"] = (work / f"{name}.jsonl").read_bytes() == reference
        run["overhead_ms_per_image_wall"] = round(1000 * (run["wall_s"] - local["wall_s"]) / local["images"], 3)
        run["overhead_ms_per_image_rate"] = round(1000 * (1 / run["rate"] - 1 / local["rate"]), 3)
        run["speed_vs_local_rate"] = round(run["rate"] / local["rate"], 3)
    facts = {"cpu": cpu_model(), "cores": os.cpu_count(), "busy_cpus_before": load_before,
             "busy_cpus_after": load_after, "load_average": os.getloadavg(), "images": str(args.images),
             "count": local["images"], "model": args.model, "batch_size": args.batch_size,
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "two_node_cluster": nodes}
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "scale.json").write_text(json.dumps({"machine": facts, "runs": runs}, indent=2) + "\n")
    lines = [
        "# htr-run: local vs --engine ray", "",
        f"{facts['date']}; {facts['cpu']}, {facts['cores']} cores; {local['images']} word images "
        f"(htr-synth --kind words --split heldout --seed 99), model `{args.model}`, greedy, batch {args.batch_size}.",
        f"Machine load: {load_before} CPUs busy with other work before the runs, {load_after} after "
        f"(load average {', '.join(f'{x:.1f}' for x in facts['load_average'])}): a training run and other "
        "jobs shared the 2 cores, so the figures are noisy and each was measured once.", "",
        "| run | wall s | images/s (htr-run's rate) | vs local | Ray overhead ms/image (wall) | (rate) | output = local |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, run in runs.items():
        lines.append(f"| {name} | {run['wall_s']:.1f} | {run['rate']:.1f} | {run['speed_vs_local_rate']:.2f}x | "
                     f"{run['overhead_ms_per_image_wall']:.3f} | {run['overhead_ms_per_image_rate']:.3f} | "
                     f"{'yes' if run['same_output_as_local'] else 'NO'} |")
    lines += ["", "wall: the whole command (Python, model load, and for ray-1/ray-2 starting a local Ray);",
              "rate: images / time from Ray being up to the last result; overhead = the difference per image",
              "against the local run. two-nodes: two `ray start` raylets on this machine, 1 CPU each "
              f"({len(nodes)} nodes seen), joined with --address.", "", "Commands:", ""]
    lines += [f"    {run['command']}" for run in runs.values()]
    (REPORTS / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
