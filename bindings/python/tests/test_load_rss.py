"""bench/load_rss.py on a tiny Flux saved by diffusers' save_pretrained (sharded): ferry
builds it on meta and reads the shards into its store, diffusers loads the same folder,
and each reports its peak RSS beside the model's bytes.

Needs torch 2.x, diffusers and accelerate (build-venv/); skipped, with the reason, where
they cannot be imported.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

try:
    import accelerate  # noqa: F401
    import diffusers  # noqa: F401
    MISSING = None
except ImportError as exc:  # Debian's python3: torch 1.13, no diffusers
    MISSING = f"diffusers and accelerate are not importable here: {exc}; tools/venv makes build-venv/"

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SCRIPT = REPO / "bench" / "load_rss.py"


def test_both_ways_load_the_same_sharded_folder_and_report_their_peak_rss(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "load_rss.json").read_text())
    assert len(list((tmp_path / "flux-tiny").glob("*.safetensors"))) > 1  # sharded
    assert (tmp_path / "flux-tiny" / "diffusion_pytorch_model.safetensors.index.json").exists()
    rows = result["rows"]
    assert set(rows) == {"ferry", "diffusers"}
    for kind, row in rows.items():
        assert "error" not in row, (kind, row)
        assert row["peak"] > 0
    assert rows["ferry"]["pinned"] >= result["model_bytes"]  # the store holds the model
    assert "ferry" in proc.stdout and "diffusers" in proc.stdout
