#!/usr/bin/env python3
"""Peak host RSS of getting a model from safetensors files to offloaded, two ways, side by side.

  ferry      the model built on the meta device (accelerate's init_empty_weights and
             diffusers' from_config), then ferry.torch.offload(model, budget,
             weights=FOLDER): the files are read straight into ferry's host store, no
             weight in torch memory on the way
  diffusers  from_pretrained(FOLDER), then, where CUDA is present,
             enable_group_offload(block_level, use_stream=True), which pins a second copy;
             without CUDA, every weight read once instead (the files are mapped, so a
             weight costs RSS only once it is read)

Each runs in a fresh process of its own, which reports its VmHWM (peak RSS) less its RSS
after the imports. The model is a diffusers FluxTransformer2DModel with random weights,
saved once with save_pretrained (sharded, max_shard_size) in bf16 under --out.
Without CUDA the diffusers row stops after from_pretrained and says so: diffusers' docs
give about 2 x the model in RAM for group offloading with streams.

    build-venv/bin/python bench/load_rss.py --size medium --out /tmp/load-rss

Prints the table; writes OUT/load_rss.json. Exits 1 when a run failed, 2 on bad usage or
when torch, diffusers or accelerate cannot be imported.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))
sys.path.insert(0, str(REPO / "bench"))  # proc_memory, also when imported as a module

try:
    import torch
    import accelerate
    from diffusers import FluxTransformer2DModel
except ImportError as exc:
    print(f"load_rss: torch, diffusers and accelerate are needed: {exc}", file=sys.stderr)
    sys.exit(2)
from proc_memory import peak_rss_bytes, reset_peak_rss, rss_bytes  # noqa: E402

# FluxTransformer2DModel keyword arguments: the structure of FLUX.1-dev, fewer and narrower
# blocks. tiny: ~2 MB (for the test); medium: ~0.5 GB; large: ~2 GB.
SIZES = {
    "tiny": dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=4,
                 attention_head_dim=16, num_attention_heads=4, joint_attention_dim=32,
                 pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=(4, 6, 6)),
    "medium": dict(patch_size=1, in_channels=64, num_layers=3, num_single_layers=6,
                   attention_head_dim=128, num_attention_heads=8, joint_attention_dim=1024,
                   pooled_projection_dim=256, guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
    "large": dict(patch_size=1, in_channels=64, num_layers=4, num_single_layers=8,
                  attention_head_dim=128, num_attention_heads=12, joint_attention_dim=2048,
                  pooled_projection_dim=512, guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
}
SHARD = {"tiny": "500KB", "medium": "200MB", "large": "500MB"}


def save_model(size, folder):
    """Writes the model once (random weights, bf16); returns its bytes."""
    marker = folder / "config.json"
    if not marker.exists():
        torch.manual_seed(0)
        model = FluxTransformer2DModel(**SIZES[size]).to(torch.bfloat16)
        model.save_pretrained(folder, max_shard_size=SHARD[size])
        del model
    with accelerate.init_empty_weights():
        model = FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(folder))
    return sum(p.numel() * 2 for p in model.parameters())


def child_ferry(folder, budget):
    import ferry.torch

    base = rss_bytes()
    reset_peak_rss()
    start = time.monotonic()
    config = FluxTransformer2DModel.load_config(folder)
    with accelerate.init_empty_weights():
        model = FluxTransformer2DModel.from_config(config).to(torch.bfloat16)
    handle = ferry.torch.offload(model, budget, weights=str(folder), backend="sim",
                                 progress=False)
    seconds = time.monotonic() - start
    stats = handle.stats()
    return dict(peak=peak_rss_bytes() - base, seconds=seconds,
                slab=stats["slab_bytes"], pinned=stats["host_pinned_bytes"], note="")


def child_diffusers(folder):
    base = rss_bytes()
    reset_peak_rss()
    start = time.monotonic()
    model = FluxTransformer2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    note = ""
    if torch.cuda.is_available():
        model.enable_group_offload(onload_device=torch.device("cuda"),
                                   offload_device=torch.device("cpu"),
                                   offload_type="block_level", num_blocks_per_group=1,
                                   use_stream=True)
    else:
        # from_pretrained maps the files: a weight costs RSS once it is read. Reading each
        # page once is what the first forward does; group offloading would then copy each
        # group to pinned memory, which needs CUDA.
        with torch.no_grad():
            for p in model.parameters():
                p.detach().view(-1).view(torch.uint8)[::4096].sum()
        note = ("no CUDA: from_pretrained, then every weight read once; enable_group_offload("
                "use_stream=True) adds a pinned copy: about 2 x the model by diffusers' docs")
    return dict(peak=peak_rss_bytes() - base, seconds=time.monotonic() - start, slab=0,
                pinned=0, note=note)


def run_child(kind, folder, budget):
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--folder", str(folder),
                          "--budget", budget], capture_output=True, text=True)
    if out.returncode != 0:
        return dict(error=(out.stderr or out.stdout).strip().splitlines()[-1:] or ["failed"])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="medium")
    p.add_argument("--out", type=pathlib.Path, help="folder for the model and the JSON")
    p.add_argument("--budget", default="50%", help="ferry's VRAM budget (default 50%%)")
    p.add_argument("--child", choices=("ferry", "diffusers"), help=argparse.SUPPRESS)
    p.add_argument("--folder", type=pathlib.Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = (child_ferry(args.folder, args.budget) if args.child == "ferry"
                  else child_diffusers(args.folder))
        print(json.dumps(result))
        return 0
    if args.out is None:
        p.error("--out is required")
    folder = args.out / f"flux-{args.size}"
    folder.mkdir(parents=True, exist_ok=True)
    model = save_model(args.size, folder)
    rows = {kind: run_child(kind, folder, args.budget) for kind in ("ferry", "diffusers")}
    print(f"peak RSS to an offloaded model: Flux-shaped, {model / 1e6:.1f} MB of bf16 weights "
          f"in {len(list(folder.glob('*.safetensors')))} shard(s), budget {args.budget}")
    print(f"  {'way':<10} {'peak RSS MB':>12} {'x model':>8} {'x (model+slab)':>15} {'s':>6}")
    failed = False
    for kind, r in rows.items():
        if "error" in r:
            failed = True
            print(f"  {kind:<10} failed: {r['error'][0]}")
            continue
        print(f"  {kind:<10} {r['peak'] / 1e6:12.1f} {r['peak'] / model:8.3f} "
              f"{r['peak'] / (model + r['slab']):15.3f} {r['seconds']:6.2f}")
        if r["note"]:
            print(f"  {'':<10} {r['note']}")
    print("  (sim's slab is host memory: on cuda it is VRAM, and ferry's row is x model)")
    (args.out / "load_rss.json").write_text(json.dumps(dict(model_bytes=model, rows=rows), indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
