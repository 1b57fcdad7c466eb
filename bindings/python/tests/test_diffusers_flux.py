"""bench/diffusers_flux.py on a tiny Flux: diffusers' FluxTransformer2DModel offloaded by
ferry gives the plain model's output, streams through its budget, and the diffusers
configurations that need CUDA are reported skipped, by name, never passed.

Needs torch 2.x and diffusers (tools/venv makes build-venv/ with both); skipped, with the
reason, where diffusers cannot be imported. With FERRY_TEST_BACKEND=cuda on a GPU, the
three configurations run on the card and ferry is compared with diffusers' streamed one.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import BACKEND, REPO

try:
    import diffusers  # noqa: F401
    import torch
    MISSING = None
except ImportError as exc:  # Debian's python3: torch 1.13, no diffusers
    MISSING = f"diffusers (with torch 2.x) is not importable here: {exc}; tools/venv makes build-venv/ with it"

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SCRIPT = REPO / "bench" / "diffusers_flux.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("flux")
    cmd = [sys.executable, str(SCRIPT), "--size", "tiny", "--out", str(out_dir)]
    if BACKEND != "cuda":
        cmd.append("--no-cuda")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out_dir / "diffusers_flux.json").read_text())
    return result, (out_dir / "diffusers_flux.txt").read_text(), proc


def test_ferry_runs_the_tiny_flux_and_its_output_matches_the_reference_exactly(run):
    result, _, _ = run
    ferry_row = result["configs"]["ferry"]
    assert ferry_row["status"] == "ok", ferry_row
    assert ferry_row["ms_per_forward"] > 0 and len(ferry_row["forward_ms"]) == 3
    assert ferry_row["output_finite"]
    if BACKEND == "cuda":
        # Against diffusers' streamed offload: the same CUDA kernels on the same bytes.
        assert result["reference"] == "diffusers-stream"
        assert ferry_row["max_abs_diff"] <= 1e-2, ferry_row["max_abs_diff"]
    else:
        # Against a plain CPU forward: the same CPU kernels on the same bytes, so 0 exactly.
        assert result["reference"] == "plain-cpu"
        assert result["configs"]["plain-cpu"]["status"] == "ok"
        assert ferry_row["max_abs_diff"] == 0.0
    assert result["reference_output_finite"] and result["reference_output_abs_mean"] > 0


def test_ferry_streamed_the_model_through_half_of_it_and_copied_nothing_back(run):
    result, _, _ = run
    row = result["configs"]["ferry"]
    s = row["ferry_stats"]
    assert row["ferry_backend"] == ("cuda" if BACKEND == "cuda" else "sim")
    assert s["vram_budget"] == result["budget_bytes"] == result["model"]["laid_out_bytes"] // 2
    assert 0 < s["slab_bytes"] <= s["vram_budget"]
    assert s["passes"] == 4  # warm-up + 3 timed
    assert s["onloads"] > s["resident_groups"]  # groups were streamed, not just made resident
    assert s["streamed_bytes_per_pass"] > 0 and s["bytes_h2d"] >= 4 * s["streamed_bytes_per_pass"]
    assert s["bytes_d2h"] == 0 and s["writebacks"] == 0  # frozen weights never go back
    assert s["misses"] <= s["passes"], s  # prefetch found them, bar the first pass
    assert s["host_pinned_bytes"] >= s["model_bytes"] == result["model"]["bytes"]
    assert row["pinned_bytes"] == s["host_pinned_bytes"]
    assert row["vram_peak_bytes"] >= s["slab_bytes"]


def test_the_diffusers_configurations_are_skipped_by_name_without_cuda(run):
    result, text, proc = run
    for name in ("diffusers-sync", "diffusers-stream"):
        row = result["configs"][name]
        if BACKEND == "cuda":
            assert row["status"] == "ok", row
            assert row["ms_per_forward"] > 0
        else:
            assert row["status"] == "skipped", row
            assert "needs CUDA" in row["reason"]
            assert f"{name}" in text and "skipped" in text
    assert "ferry" in text and "max|diff|" in text
    assert "ferry: building the model" in proc.stderr  # progress goes to stderr


def test_the_script_refuses_full_size_without_cuda(tmp_path):
    if BACKEND == "cuda":
        pytest.skip("a GPU is here: full size would run (bench/diffusers_flux.py --size full)")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--size", "full", "--no-cuda",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--size full needs CUDA" in proc.stderr
    assert not (tmp_path / "diffusers_flux.json").exists()
