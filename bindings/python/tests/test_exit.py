"""A script that ends without close() exits cleanly: torch may drop its views of ferry's
memory at any point of interpreter shutdown, and the deleter it then calls is libferry's
C function, never a Python callback that shutdown has already freed."""

import subprocess
import sys

import pytest

pytest.importorskip("torch")

from conftest import BACKEND, PYTHON_DIR  # noqa: E402

PRELUDE = r"""
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import torch
import ferry
import ferry.torch
from models import TinyTransformer, inputs

model = TinyTransformer().eval()
handle = ferry.torch.offload(model, "40%", backend=sys.argv[3])
x = inputs(n=1)[0]
if sys.argv[3] == "cuda":
    x = x.cuda()
with torch.no_grad():
    y = model(x)
"""

ENDINGS = {
    # The model, its handle and an output are module globals at exit.
    "module alive": "",
    # Only the model keeps the handle (and its cached views of the slots).
    "handle dropped": "del handle\n",
    # A group is held and tensors viewing its slot are alive at exit.
    "views alive": (
        "held = handle.acquired(model.blocks[2])\n"
        "held.__enter__()\n"
        "views = [p.data for p in model.blocks[2].parameters()]\n"
        "alias = views[0].view(-1)[:4]\n"
    ),
    # The process exits while a forward's exception, whose traceback holds the frames
    # of the blocks (and their views), is in flight.
    "exception in flight": (
        "def fail():\n"
        "    model.blocks[4].heads = 5\n"
        "    with torch.no_grad():\n"
        "        model(x)\n"
        "try:\n"
        "    fail()\n"
        "except RuntimeError:\n"
        "    sys.exit(0)\n"
        "raise AssertionError('block 4 should have raised')\n"
    ),
    # The ctypes API: a torch tensor from a device view, its runtime never closed.
    "ctypes view alive": (
        "rt = ferry.Runtime('1MiB', backend=sys.argv[3])\n"
        "g = rt.define_group('g')\n"
        "t = g.define_tensor('t', dtype='float32', shape=(4, 4))\n"
        "rt.plan(); rt.seal(); g.acquire()\n"
        "from torch.utils.dlpack import from_dlpack\n"
        "kept = from_dlpack(t.device_view())\n"
        "capsule = t.device_view().__dlpack__()  # never consumed\n"
    ),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_script_that_ends_without_close_exits_with_status_zero_and_no_error(ending):
    tests_dir = str(PYTHON_DIR / "tests")
    script = PRELUDE + ENDINGS[ending]
    out = subprocess.run(
        [sys.executable, "-c", script, str(PYTHON_DIR), tests_dir, BACKEND],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, f"exit status {out.returncode}\n{out.stderr}"
    assert out.stderr.strip() == "", out.stderr
