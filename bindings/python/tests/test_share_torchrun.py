"""The shared host store across processes: 4 torchrun ranks (gloo, CPU) offload one
model with share= and without (bench/host_share.py), side by side; and a chaos run that
kills processes at random points while others stream."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
from conftest import BACKEND, PYTHON_DIR, REPO  # noqa: E402

pytestmark = pytest.mark.skipif(BACKEND != "sim", reason="the figures are taken on sim")


def torchrun_works():
    """torch 1.13's torchrun fails at start on Python >= 3.11 (its --redirects default)."""
    major = int(torch.__version__.split(".")[0])
    return major >= 2 or sys.version_info < (3, 11)


@pytest.mark.skipif(not torchrun_works(), reason="torch 1.13's torchrun cannot start on "
                    "this Python (3.11+); the torch 2.x lane runs it")
def test_four_torchrun_ranks_share_one_host_copy_and_match_the_plain_model(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "host_share.py"), "--ranks", "4", "--blocks", "8",
         "--width", "512", "--out", str(tmp_path), "--timeout", "120"],
        capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=str(PYTHON_DIR)))
    print(proc.stdout)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr[-4000:]
    results = json.loads((tmp_path / "host_share.json").read_text())
    share, private = results["share"], results["private"]
    assert results["checks"]["bitwise equal, every rank, both runs"]
    assert results["checks"]["no segment left"]
    assert share["pss_growth_bytes"] <= share["limit_bytes"], proc.stdout
    assert private["pss_growth_bytes"] >= 3 * private["model_bytes"], proc.stdout
    assert sorted(share["roles"]) == ["attached"] * 3 + ["loader"]
    assert sum(1 for b in share["bytes_read"] if b > 0) == 1, "only the loader reads the files"
    # Timing on a shared 2-core VM is noisy: the 5% target is reported by the benchmark;
    # here attaching must at least be far cheaper than loading.
    assert share["attach_s"] < 0.5 * share["load_s"], proc.stdout


CHAOS_WORKER = r"""
import os, sys, time, torch, ferry, ferry.torch
sys.path.insert(0, sys.argv[4])
import host_share
share, weights, passes = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = host_share.build(4, 256, "meta")
x = torch.randn(4, 256, generator=torch.Generator().manual_seed(1))
want = torch.load(weights + ".want")
handle = ferry.torch.offload(model, "60%", weights=weights, share=share, backend="sim",
                             progress=False, sim_chaos=1, share_timeout=60)
print(handle.host_share_role, flush=True)
with torch.no_grad():
    for _ in range(passes):
        if not torch.equal(model(x), want):
            sys.exit(3)
handle.close()
print("ok", flush=True)
"""


def test_chaos_kills_leave_the_survivors_right_and_no_segment(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import host_share

    model = host_share.build(4, 256, "cpu")
    weights = tmp_path / "model.safetensors"
    host_share.write_safetensors(weights, model.state_dict())
    with torch.no_grad():
        torch.save(model(torch.randn(4, 256, generator=torch.Generator().manual_seed(1))),
                   str(weights) + ".want")
    script = tmp_path / "worker.py"
    script.write_text(CHAOS_WORKER)
    name = f"chaos-{os.getpid()}"
    rng = random.Random(7)
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR), OMP_NUM_THREADS="1")

    def start(passes):
        return subprocess.Popen([sys.executable, str(script), name, str(weights), str(passes),
                                 str(REPO / "bench")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)

    for round_ in range(2):
        victims = [start(100000) for _ in range(4)]  # stream until killed
        survivors = [start(400) for _ in range(2)]
        for victim in victims:  # at random points: loading, waiting, attaching, streaming
            time.sleep(rng.uniform(0.0, 1.5))
            victim.send_signal(signal.SIGKILL)
        for victim in victims:
            victim.wait(30)
        for survivor in survivors:
            out, err = survivor.communicate(timeout=180)
            assert survivor.returncode == 0, f"round {round_}: {out}\n{err[-3000:]}"
            assert out.strip().endswith("ok")
        assert not os.path.exists(f"/dev/shm/ferry-host.{name}"), "the last one removed it"
