#!/usr/bin/env python3
"""Smoke test of ferry-bench: runs it on sim at a small scale, then checks the JSON it
wrote (structure, and figures that must hold whatever the machine's speed), and that bad
flags exit with status 2.

usage: check_bench.py FERRY_BENCH WORK_DIR
"""
import json
import math
import os
import subprocess
import sys

STRATEGIES = ["writeback", "sync", "stream", "ferry"]
KEYS = {"ms_per_pass", "passes_per_s", "h2d_bytes_per_pass", "d2h_bytes_per_pass", "h2d_gbps",
        "floor_ms", "efficiency", "vram_peak_bytes", "host_rss_bytes", "host_pinned_bytes"}


def close(a, b, rel=2e-3):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def check_results(r):
    assert r["backend"] == "sim", r["backend"]
    assert list(r["strategies"]) == STRATEGIES, list(r["strategies"])
    model_bytes = r["model"]["bytes"]
    peak = r["raw_peak_h2d_gbps"]
    compute_ms = r["compute_ms_per_pass"]
    assert peak > 0 and compute_ms > 0
    for name, s in r["strategies"].items():
        assert set(s) == KEYS, (name, sorted(set(s) ^ KEYS))
        assert s["ms_per_pass"] > 0, name
        assert close(s["ms_per_pass"] * s["passes_per_s"], 1000.0), name
        floor = max(compute_ms, s["h2d_bytes_per_pass"] / (peak * 1e6))
        assert close(s["floor_ms"], floor), (name, s["floor_ms"], floor)
        assert close(s["efficiency"], s["floor_ms"] / s["ms_per_pass"]), name
        assert 0 < s["efficiency"] <= 1.05, (name, s["efficiency"])
        assert s["vram_peak_bytes"] > 0, name
    wb, sync, stream, ferry = (r["strategies"][n] for n in STRATEGIES)
    assert wb["h2d_bytes_per_pass"] == model_bytes
    assert wb["d2h_bytes_per_pass"] == wb["h2d_bytes_per_pass"]
    assert sync["d2h_bytes_per_pass"] == 0 and stream["d2h_bytes_per_pass"] == 0
    assert ferry["d2h_bytes_per_pass"] == 0
    assert 0 < ferry["h2d_bytes_per_pass"] < model_bytes, "half the model is resident"
    assert wb["host_pinned_bytes"] == 0 and sync["host_pinned_bytes"] == 0
    assert ferry["host_pinned_bytes"] >= model_bytes
    assert ferry["vram_peak_bytes"] <= r["budget_bytes"]
    assert ferry["ms_per_pass"] < wb["ms_per_pass"], "ferry must beat writeback"
    assert ferry["ms_per_pass"] < sync["ms_per_pass"], "ferry must beat sync"
    for name in STRATEGIES:
        assert close(r["ferry_speedup"][name],
                     r["strategies"][name]["ms_per_pass"] / ferry["ms_per_pass"]), name
        assert r["verdicts"][name].split("-bound")[0] in ("link", "compute", "overhead")
    micro = r["micro"]
    assert micro["acquire_release_resident_ns"] > 0 and micro["acquire_release_prefetched_ns"] > 0
    assert micro["prefetched_misses"] == 0
    assert all(set(t) == {"name", "value", "limit", "met"} for t in r["targets"])


def main():
    bench, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "bench-smoke.json")
    if os.path.exists(out):  # a previous run's file must not pass for this run's
        os.remove(out)
    run = subprocess.run([bench, "--backend", "sim", "--model", "qwen-image", "--scale", "1/512",
                          "--passes", "3", "--json", out], capture_output=True, text=True)
    print(run.stdout)
    assert run.returncode == 0, run.stderr
    with open(out) as f:
        check_results(json.load(f))

    for bad in (["--scale", "0"], ["--scale", "2/1"], ["--budget", "half"], ["--passes", "0"],
                ["--model", "gpt"], ["--strategies", "ferry,magic"], ["--frobnicate", "1"],
                ["--groups", "4"], ["--passes"]):
        run = subprocess.run([bench] + bad, capture_output=True, text=True)
        assert run.returncode == 2, (bad, run.returncode)
        assert run.stderr.startswith("ferry-bench: "), (bad, run.stderr)
    print("bench smoke: ok")


if __name__ == "__main__":
    main()
