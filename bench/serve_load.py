"""`edgelat serve` under a bounded load on loopback, next to the same calls in-process.

Two loads, each CLIENTS concurrent clients (threads, one httpx client each) for SECONDS seconds:
- architecture batches: each request prices BATCH NAS-Bench-201 architectures (drawn at random from a pool
  whose blocks were priced once beforehand) -> architectures per second;
- single ONNX networks: each request uploads one network (mobilenetv2_100 at 160x160) -> requests per second
  and per-request latency p50/p99.
In-process: the same calls one after another in this process, models loaded once (what a search loop
holding TVM would do), for the same time. The server's log goes to bench/out/serve_load.log (not kept in git).

Usage: python bench/serve_load.py [--workspace W] [--clients 8] [--seconds 20] [--batch 1000]
(default workspace: ~/.cache/edgelat-bench-serve, `local` profiled on the kinds the networks run, 20 configs each).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _workspace import OUT, write_outputs

from edgelat.workspace import open_workspace

KINDS = ("conv2d", "dwconv2d", "dense", "add", "global_avg_pool", "activation", "avg_pool2d", "mul")


def _prepare(root: Path) -> None:
    from edgelat.predictors.train import train_device
    from edgelat.profiler.campaign import ProfileConfig, profile

    with open_workspace(root) as ws:
        if not (ws.model_dir("local", "default") / "meta.json").exists():
            print(f"profiling local into {root} ({', '.join(KINDS)}, 20 configs each) ...", flush=True)
            profile(ws, "local", ProfileConfig(ops=KINDS, samples=20, repeat=3, min_repeat_ms=5.0, weighted=False))
            train_device(ws, "local")


def _start(root: Path, token: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = Path(tempfile.mkdtemp(prefix="edgelat-bench-")) / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    cmd = [sys.executable, "-m", "edgelat.cli", "serve", "--port", str(port), "--token-file", str(token_file), "-w", str(root)]
    process = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the server did not start: see {log}")


def _load(clients: int, seconds: float, call: Callable[[httpx.Client, int], int], url: str, token: str) -> dict[str, Any]:
    """``clients`` threads calling ``call(client, i)`` (it returns the items it priced) until ``seconds`` have passed."""
    latencies: list[float] = []
    items = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def run(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:
            i = k
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                n = call(client, i)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    items[0] += n
                i += clients

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return _summary(latencies, items[0], wall)


def _serial(seconds: float, call: Callable[[int], int]) -> dict[str, Any]:
    latencies, items, i = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        items += call(i)
        latencies.append(time.perf_counter() - t0)
        i += 1
    return _summary(latencies, items, time.perf_counter() - start)


def _summary(latencies: list[float], items: int, wall: float) -> dict[str, Any]:
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "items": items, "seconds": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 3),
            "items_per_s": round(items / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "mean_ms": round(statistics.fmean(ms), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path.home() / ".cache" / "edgelat-bench-serve")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=5000, help="Distinct architectures the batches are drawn from.")
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    OUT.mkdir(exist_ok=True)
    _prepare(args.workspace)

    from edgelat.datasets.zoo import export_onnx
    from edgelat.nas import get_space
    from edgelat.predictors.predict import load_model, predict_network
    from edgelat.workflows.oracle import device_oracle, predict_archs

    space = get_space("nb201")
    rng = np.random.default_rng(0)
    pool = list(dict.fromkeys(space.sample(rng) for _ in range(args.pool)))
    onnx = export_onnx("mobilenetv2_100", 160, OUT / "serve_load_mobilenetv2_160.onnx")
    data = Path(onnx).read_bytes()

    def batch(i: int) -> list[str]:
        r = np.random.default_rng(i)
        return [pool[j] for j in r.integers(0, len(pool), args.batch)]

    # In-process first (the blocks of the pool priced once, into the workspace's cache: the server reuses them).
    with open_workspace(args.workspace) as ws:
        model = load_model(ws, "local")
        oracle = device_oracle(ws, "local", space, model.recipe, model=model)
        predict_archs(ws, "local", space, pool, oracle=oracle)
        in_archs = _serial(args.seconds, lambda i: len(predict_archs(ws, "local", space, batch(i), oracle=oracle)))
        predict_network(ws, "local", onnx, latency_model=model)
        in_onnx = _serial(args.seconds, lambda i: bool(predict_network(ws, "local", onnx, latency_model=model).total_ms) * 1)
    print(f"in-process: archs {in_archs['items_per_s']}/s; onnx p50 {in_onnx['p50_ms']} ms, p99 {in_onnx['p99_ms']} ms", flush=True)

    token = secrets.token_urlsafe(24)
    process, url = _start(args.workspace, token, OUT / "serve_load.log")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        warm = httpx.post(f"{url}/v1/devices/local/predict/archs", headers=headers, json={"space": "nb201", "archs": pool}, timeout=600)
        warm.raise_for_status()
        httpx.post(f"{url}/v1/devices/local/predict", headers=headers, files={"model": ("m.onnx", data)}, timeout=600).raise_for_status()

        def post_archs(client: httpx.Client, i: int) -> int:
            r = client.post("/v1/devices/local/predict/archs", json={"space": "nb201", "archs": batch(i)})
            r.raise_for_status()
            return len(r.json())

        def post_onnx(client: httpx.Client, i: int) -> int:
            r = client.post("/v1/devices/local/predict", files={"model": ("m.onnx", data)})
            r.raise_for_status()
            return 1

        served_archs = _load(args.clients, args.seconds, post_archs, url, token)
        print(f"served ({args.clients} clients): archs {served_archs['items_per_s']}/s", flush=True)
        served_onnx = _load(args.clients, args.seconds, post_onnx, url, token)
        served_one = _load(1, args.seconds, post_onnx, url, token)
        print(f"served onnx: {args.clients} clients p50 {served_onnx['p50_ms']} ms p99 {served_onnx['p99_ms']} ms "
              f"({served_onnx['requests_per_s']}/s); 1 client p50 {served_one['p50_ms']} ms", flush=True)  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=30)
    rows = [
        {"load": "archs", "where": "in-process", "clients": 1, **in_archs},
        {"load": "archs", "where": "served", "clients": args.clients, **served_archs},
        {"load": "onnx", "where": "in-process", "clients": 1, **in_onnx},
        {"load": "onnx", "where": "served", "clients": 1, **served_one},
        {"load": "onnx", "where": "served", "clients": args.clients, **served_onnx},
    ]
    summary = {"clients": args.clients, "seconds": args.seconds, "batch": args.batch, "pool": len(pool), "network": "mobilenetv2_100@160",
               "cpu_count": os.cpu_count()}  # fmt: skip
    write_outputs("serve_load", summary, rows)
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
