#!/usr/bin/env python3
"""Smoke test of ferry-bench: runs it on sim at a small scale, then checks the JSON it
wrote (structure, and figures that must hold whatever the machine's speed), ferry's pass
against its plan's pass in the planner's model, the --grid run's JSON, and that bad flags
exit with status 2.

usage: check_bench.py FERRY_BENCH WORK_DIR
"""
import json
import math
import os
import subprocess
import sys

STRATEGIES = ["writeback", "sync", "stream", "partial", "ferry"]
KEYS = {"ms_per_pass", "passes_per_s", "h2d_bytes_per_pass", "d2h_bytes_per_pass", "h2d_gbps",
        "floor_ms", "efficiency", "vram_peak_bytes", "host_rss_bytes", "host_pinned_bytes"}


# How far ferry's measured pass may lie from its plan's modeled one: the sim's copies and
# computes never end early (2% for the clock's granularity), but its threads can be late.
MODEL_BELOW, MODEL_ABOVE = 0.02, 0.25
GRID_KEYS = {"model", "budget", "ferry_ms_per_pass", "ferry_model_ms_per_pass", "ferry_floor_ms",
             "ferry_efficiency", "partial_ms_per_pass", "partial_efficiency",
             "ferry_speedup_over_partial"}


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
    wb, sync, stream, partial, ferry = (r["strategies"][n] for n in STRATEGIES)
    assert wb["h2d_bytes_per_pass"] == model_bytes
    assert wb["d2h_bytes_per_pass"] == wb["h2d_bytes_per_pass"]
    assert sync["d2h_bytes_per_pass"] == 0 and stream["d2h_bytes_per_pass"] == 0
    assert ferry["d2h_bytes_per_pass"] == 0
    assert 0 < ferry["h2d_bytes_per_pass"] < model_bytes, "half the model is resident"
    assert wb["host_pinned_bytes"] == 0 and sync["host_pinned_bytes"] == 0
    assert ferry["host_pinned_bytes"] >= model_bytes
    assert ferry["vram_peak_bytes"] <= r["budget_bytes"]
    assert partial["vram_peak_bytes"] <= r["budget_bytes"]
    assert 0 < partial["h2d_bytes_per_pass"] < model_bytes, "partial keeps blocks resident"
    assert partial["d2h_bytes_per_pass"] == 0 and partial["host_pinned_bytes"] >= model_bytes
    # A modeled pass is a lower bound of the sim's, which adds its threads' costs; on a
    # loaded machine they stretch a pass, so the bound above is loose.
    model_ms = r["ferry_model_ms_per_pass"]
    assert model_ms * (1 - MODEL_BELOW) <= ferry["ms_per_pass"] <= model_ms * (1 + MODEL_ABOVE), \
        (ferry["ms_per_pass"], model_ms)
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


def check_grid(g):
    cells = g["grid"]
    assert [(c["model"], c["budget"]) for c in cells] == [
        (m, b) for m in ("qwen-image", "flux", "wan14b") for b in ("25%", "50%", "75%")]
    for c in cells:
        assert set(c) == GRID_KEYS, sorted(set(c) ^ GRID_KEYS)
        assert 0 < c["ferry_efficiency"] <= 1.05 and 0 < c["partial_efficiency"] <= 1.05, c
        assert close(c["ferry_speedup_over_partial"],
                     c["partial_ms_per_pass"] / c["ferry_ms_per_pass"]), c
        assert c["ferry_model_ms_per_pass"] * (1 - MODEL_BELOW) <= c["ferry_ms_per_pass"], c
    assert all(set(t) == {"name", "value", "limit", "met"} for t in g["targets"])
    assert len(g["targets"]) == 3


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

    grid_out = os.path.join(work, "bench-grid.json")
    if os.path.exists(grid_out):
        os.remove(grid_out)
    run = subprocess.run([bench, "--backend", "sim", "--grid", "--scale", "1/1024", "--passes", "2",
                          "--json", grid_out], capture_output=True, text=True)
    print(run.stdout)
    assert run.returncode == 0, run.stderr
    with open(grid_out) as f:
        check_grid(json.load(f))

    for bad in (["--scale", "0"], ["--scale", "2/1"], ["--budget", "half"], ["--passes", "0"],
                ["--model", "gpt"], ["--strategies", "ferry,magic"], ["--frobnicate", "1"],
                ["--groups", "4"], ["--passes"], ["--grid", "--model"]):
        run = subprocess.run([bench] + bad, capture_output=True, text=True)
        assert run.returncode == 2, (bad, run.returncode)
        assert run.stderr.startswith("ferry-bench: "), (bad, run.stderr)
    print("bench smoke: ok")


if __name__ == "__main__":
    main()
