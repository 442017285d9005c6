"""Bounded load test of `janus serve` on the loopback interface; stops by itself.

Starts `janus serve` twice in a subprocess on 127.0.0.1 (with micro-batching, and with
--max-batch-texts 1, i.e. one request at a time), sends closed-loop single-sentence requests at each
concurrency, and reports p50 / p99 latency and throughput per decoding setting; also the latency of a
direct `Translator.generate([text])` call in this process, the baseline of the serving overhead.

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


def start_server(checkpoint: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "janusgen", "serve", "--checkpoint", str(checkpoint), "--host", HOST]
    cmd += ["--port", str(port), "--dtype", "float32", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
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


async def level(
    url: str, texts: list[str], settings: dict, concurrency: int, requests: int, seconds: float
) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            reply = await client.post("/translate", json={"texts": [texts[i % len(texts)]], **settings})
            if reply.status_code == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2),
        "throughput_rps": round(len(latencies) / wall, 2),
    }


def direct(translator: Translator, texts: list[str], settings: dict, requests: int) -> dict:
    latencies = []
    for i in range(requests):
        start = time.perf_counter()
        translator.generate([texts[i % len(texts)]], **settings)
        latencies.append(time.perf_counter() - start)
    lat = np.array(latencies)
    return {
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2),
    }


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
    parser.add_argument("--level-seconds", type=float, default=30.0, help="most seconds per level")
    parser.add_argument("--time-limit", type=float, default=600.0, help="most seconds in all")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    end = time.monotonic() + args.time_limit
    texts = PairDataset.open(args.data, args.split).texts()[0][:512]
    concurrency = [int(c) for c in args.concurrency.split(",")]
    settings = {name: SETTINGS[name] for name in args.settings.split(",")}

    translator = Translator.load(args.checkpoint, dtype="float32")
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "direct": {name: direct(translator, texts, s, args.requests) for name, s in settings.items()},
        "served": {},
    }
    del translator
    for label, extra in (
        ("micro-batching", ["--max-wait-ms", str(args.max_wait_ms)]),
        ("one at a time", ["--max-batch-texts", "1"]),
    ):
        proc, url = start_server(args.checkpoint, extra)
        try:
            for name, s in settings.items():
                for c in concurrency:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    row = asyncio.run(level(url, texts, s, c, args.requests, min(args.level_seconds, left)))
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
        if 1 in batched:
            ratio = batched[1]["p99_ms"] / report["direct"][name]["p99_ms"]
            print(f"{name}: p99 at concurrency 1 / direct call = {ratio:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
