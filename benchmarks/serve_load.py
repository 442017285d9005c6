"""Bounded load test of `janus serve` on the loopback interface; stops by itself.

Starts `janus serve` twice in a subprocess on 127.0.0.1 (with micro-batching, and with
--max-batch-texts 1, i.e. one request at a time), warms each setting up, sends closed-loop
single-sentence requests at each concurrency, and reports p50 / p99 latency and throughput per decoding
setting. At concurrency 1 every request is paired with a direct `Translator.generate([text])` call on
the same text in this process, just before it (the server idle meanwhile): the baseline of the serving
overhead, measured under the same machine load. The server's own clock (/metrics) splits a served c=1
request into its decoding and the rest. --server-cpus / --client-cpus pin the two processes to disjoint
cores (one thread per core), to tell the serving path's cost from two processes sharing the cores.

    python benchmarks/serve_load.py --checkpoint runs/janus/best --data work/bible_data --json serve.json

Every level stops after --requests requests or --level-seconds, the whole run after --time-limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from janusgen.data.dataset import PairDataset
from janusgen.decoding.translator import Translator

HOST = "127.0.0.1"  # loopback only, by design
SETTINGS = {
    "AR greedy": {"mode": "ar", "beam": 1},
    "NAR T=4": {"mode": "nar", "iterations": 4},
    "speculative": {"mode": "speculative"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(
    checkpoint: Path, extra: list[str], cpus: set[int] | None = None, threads: int | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "janusgen", "serve", "--checkpoint", str(checkpoint), "--host", HOST]
    cmd += ["--port", str(port), "--dtype", "float32", *extra]
    threads = threads or (len(cpus) if cpus else None)
    if threads:
        cmd += ["--threads", str(threads)]
    pin = None
    if cpus is not None:

        def pin() -> None:
            os.sched_setaffinity(0, cpus)

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, preexec_fn=pin)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the server did not start within 120 s")


def cpu_set(text: str) -> set[int]:
    """A --*-cpus value: core numbers separated by commas, e.g. 0 or 0,1."""
    return {int(c) for c in text.split(",")}


def server_clock(url: str) -> dict[str, float]:
    """The server's totals: /translate requests and their seconds, and seconds spent decoding."""
    wanted = ("janus_request_seconds_sum", "janus_request_seconds_count", "janus_decode_seconds_total")
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return {name: float(value) for name, value in (line.split() for line in lines if line.startswith(wanted))}


def percentiles(seconds: list[float]) -> dict:
    lat = np.array(seconds) if seconds else np.array([float("nan")])
    return {
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2),
    }


async def level(
    url: str,
    texts: list[str],
    settings: dict,
    concurrency: int,
    requests: int,
    seconds: float,
    translator: Translator | None = None,
) -> dict:
    """One closed-loop level; with `translator` (concurrency 1) each request follows a direct call."""
    latencies: list[float] = []
    direct: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            if time.monotonic() > deadline:
                return
            if translator is not None:
                start = time.perf_counter()
                translator.generate([texts[i % len(texts)]], **settings)
                direct.append(time.perf_counter() - start)
            start = time.perf_counter()
            reply = await client.post("/translate", json={"texts": [texts[i % len(texts)]], **settings})
            if reply.status_code == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    before = server_clock(url)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    after = server_clock(url)
    row = {"concurrency": concurrency, "requests": len(latencies), "errors": errors}
    row.update(percentiles(latencies))
    row["throughput_rps"] = round(len(latencies) / (wall - sum(direct)), 2)
    if translator is not None:
        row["direct"] = percentiles(direct)
        served = after["janus_request_seconds_count"] - before["janus_request_seconds_count"]
        if served:  # means per request, by the server's clock
            row["server"] = {
                key: round((after[name] - before[name]) / served * 1000, 2)
                for key, name in (
                    ("request_mean_ms", "janus_request_seconds_sum"),
                    ("decode_mean_ms", "janus_decode_seconds_total"),
                )
            }
            row["direct"]["mean_ms"] = round(float(np.mean(direct)) * 1000, 2)
            row["mean_ms"] = round(float(np.mean(latencies)) * 1000, 2)
    return row


def warm_up(url: str, texts: list[str], settings: dict, requests: int) -> None:
    """First calls pay one-off costs (kernel selection, allocator growth): not part of any level."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for text in texts[:requests]:
            client.post("/translate", json={"texts": [text], **settings})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="prepared data folder (its test sources)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of: {', '.join(SETTINGS)}")
    parser.add_argument("--requests", type=int, default=64, help="requests per level (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=8, help="unrecorded requests per setting and server")
    parser.add_argument("--level-seconds", type=float, default=30.0, help="most seconds per level")
    parser.add_argument("--time-limit", type=float, default=600.0, help="most seconds in all")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--server-cpus", type=cpu_set, default=None, help="pin the server to these cores, e.g. 0"
    )
    parser.add_argument(
        "--client-cpus", type=cpu_set, default=None, help="pin this process to these cores, e.g. 1"
    )
    parser.add_argument("--server-threads", type=int, default=None, help="janus serve --threads")
    args = parser.parse_args()
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
        torch.set_num_threads(len(args.client_cpus))
    end = time.monotonic() + args.time_limit
    texts = PairDataset.open(args.data, args.split).texts()[0][:512]
    concurrency = [int(c) for c in args.concurrency.split(",")]
    settings = {name: SETTINGS[name] for name in args.settings.split(",")}

    translator = Translator.load(args.checkpoint, dtype="float32")  # the direct calls, as the server's
    for s in settings.values():
        for text in texts[: args.warmup]:
            translator.generate([text], **s)
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "server_cpus": sorted(args.server_cpus) if args.server_cpus else None,
        "client_cpus": sorted(args.client_cpus) if args.client_cpus else None,
        "server_threads": args.server_threads,
        "served": {},
    }
    for label, extra in (
        ("micro-batching", ["--max-wait-ms", str(args.max_wait_ms)]),
        ("one at a time", ["--max-batch-texts", "1"]),
    ):
        proc, url = start_server(args.checkpoint, extra, args.server_cpus, args.server_threads)
        try:
            for name, s in settings.items():
                warm_up(url, texts, s, args.warmup)
                for c in concurrency:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    paired = translator if c == 1 else None
                    seconds = min(args.level_seconds, left)
                    row = asyncio.run(level(url, texts, s, c, args.requests, seconds, paired))
                    report["served"].setdefault(label, {}).setdefault(name, []).append(row)
                    print(f"{label:<15} {name:<12} c={c:<3} {row}", flush=True)
        finally:
            proc.terminate()  # SIGTERM: the server finishes in-flight requests and exits
            proc.wait(60)
    for name in settings:
        batched = {r["concurrency"]: r for r in report["served"].get("micro-batching", {}).get(name, [])}
        single = {r["concurrency"]: r for r in report["served"].get("one at a time", {}).get(name, [])}
        top = max(concurrency)
        if top in batched and top in single:
            ratio = batched[top]["throughput_rps"] / single[top]["throughput_rps"]
            print(f"{name}: throughput at concurrency {top}, micro-batching / one at a time = {ratio:.2f}x")
        for label, rows in (("micro-batching", batched), ("one at a time", single)):
            if 1 in rows:
                p99, direct_p99 = rows[1]["p99_ms"], rows[1]["direct"]["p99_ms"]
                p50, direct_p50 = rows[1]["p50_ms"], rows[1]["direct"]["p50_ms"]
                print(
                    f"{name}, {label}: at concurrency 1, served / direct = {p50 / direct_p50:.2f} at "
                    f"p50, {p99 / direct_p99:.2f} at p99"
                )
                if "server" in rows[1]:
                    server = rows[1]["server"]
                    print(
                        f"  mean ms: served {rows[1]['mean_ms']}, of which in the handler "
                        f"{server['request_mean_ms']} and decoding {server['decode_mean_ms']}; "
                        f"direct {rows[1]['direct']['mean_ms']}"
                    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
