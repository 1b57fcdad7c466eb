#!/usr/bin/env python3
"""Times one Flux forward under diffusers' group offloading and under ferry, side by side.

diffusers' FluxTransformer2DModel (untrained weights, built on the meta device and filled
with a cheap deterministic pattern), one forward at 1024x1024 (4096 image tokens, 512
text tokens), a VRAM budget of half the model, three configurations, each on a fresh
model, each timed over --forwards forwards after one warm-up:

  diffusers-sync    enable_group_offload(block_level, 1 block per group, use_stream=False):
                    the seed's baseline, which copies every group back to the CPU after use
  diffusers-stream  the same with use_stream=True (pinned copies, prefetch on a side stream)
  ferry             ferry.torch.offload(model, budget="50%")

Reported per configuration: ms per forward, peak VRAM (torch.cuda.max_memory_allocated
plus ferry's slab, which ferry allocates itself), host RSS (VmRSS after the timed
forwards), pinned host bytes and the largest absolute difference of the output from the
reference: diffusers-stream on cuda.

Without CUDA, the diffusers configurations are skipped by name (they need a CUDA onload
device) and ferry runs on its sim backend; the reference is then a plain CPU forward of
the same model. Use --size tiny there (full size needs CUDA and ~2 x 23.8 GB of RAM).

    python3 bench/diffusers_flux.py --size tiny --out /tmp/flux        # any machine
    FERRY_LIBRARY=build-gpu/libferry.so python3 bench/diffusers_flux.py --size full --out DIR

Writes DIR/diffusers_flux.json (after each configuration, so a run cut short keeps what
it measured) and DIR/diffusers_flux.txt, prints the table; progress goes to stderr.
Exits 0 when every configuration ran or was skipped with its reason, 1 when one failed,
2 on bad usage or when torch or diffusers cannot be imported.
"""

import argparse
import gc
import json
import math
import os
import pathlib
import platform
import sys
import time

T0 = time.monotonic()
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))
sys.path.insert(0, str(REPO / "bench"))  # proc_memory, also when imported as a module


def progress(msg):
    print(f"[{time.monotonic() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


try:
    import torch
except ImportError as exc:  # say what is missing, not a traceback
    print(f"diffusers_flux: torch is not importable here: {exc}", file=sys.stderr)
    sys.exit(2)
try:
    import diffusers
    from diffusers import FluxTransformer2DModel
except ImportError as exc:
    print(f"diffusers_flux: diffusers is not importable here: {exc}", file=sys.stderr)
    sys.exit(2)
import ferry  # noqa: E402
from proc_memory import peak_rss_bytes, reset_peak_rss, rss_bytes  # noqa: E402
import ferry.torch  # noqa: E402

# FluxTransformer2DModel keyword arguments. full: FLUX.1-dev (12B parameters, 23.8 GB in
# bf16); tiny: the same structure, small enough for a CPU in a second, with enough single
# blocks that half of it holds two slots of a double block and the root group.
SIZES = {
    "full": dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                 attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                 pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
    "tiny": dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=8,
                 attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                 pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=(4, 6, 6)),
}
# (latent grid side, text tokens): 1024x1024 pixels is a 64x64 grid of 2x2-packed latents.
TOKENS = {"full": (64, 512), "tiny": (8, 16)}

CONFIGS = ("diffusers-sync", "diffusers-stream", "ferry")
LABELS = {
    "diffusers-sync": "diffusers group offload, use_stream=False",
    "diffusers-stream": "diffusers group offload, use_stream=True",
    "ferry": "ferry.torch.offload",
    "plain-cpu": "plain CPU forward (no offload)",
}


# --- the model -------------------------------------------------------------------------

TILE = 1_000_003  # a prime, so that the pattern does not line up with rows


def fill_(model, seed=0):
    """Fills every parameter and buffer with a deterministic pattern, fast: a tile of
    uniform values in [-1, 1) made once, copied chunk by chunk at a per-tensor offset and
    scaled like a default init (sqrt(3 / fan_in) for matrices, so activations keep their
    size through 57 blocks); norm weights 1, other vectors small."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(2 * TILE, generator=gen, dtype=torch.float32) * 2 - 1
    with torch.no_grad():
        named = list(model.named_parameters()) + list(model.named_buffers())
        for k, (name, t) in enumerate(named):
            if t.numel() == 0:
                continue
            if t.dim() >= 2:
                scale = math.sqrt(3.0 / (t[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                t.fill_(1.0)
                continue
            else:
                scale = 0.02
            offset = (k * 7919) % TILE
            tile = (base[offset:offset + TILE] * scale).to(t.dtype)
            flat = t.view(-1)
            for start in range(0, flat.numel(), TILE):
                n = min(TILE, flat.numel() - start)
                flat[start:start + n].copy_(tile[:n])


def build_model(size, dtype):
    """A fresh FluxTransformer2DModel on the CPU: made on the meta device (no random
    init), its storage allocated with to_empty, then fill_()."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = FluxTransformer2DModel(**SIZES[size])
    finally:
        torch.set_default_dtype(default)
    model = model.to_empty(device="cpu")
    assert all(t.dtype == dtype for t in model.parameters()), "a parameter is not in the default dtype"
    fill_(model)
    return model.eval()


def model_bytes(model):
    return sum(t.numel() * t.element_size()
               for t in list(model.parameters()) + list(model.buffers()))


def make_inputs(size, dtype, device):
    side, txt = TOKENS[size]
    cfg = SIZES[size]
    gen = torch.Generator().manual_seed(1)
    img_ids = torch.zeros(side, side, 3)
    img_ids[..., 1] = torch.arange(side)[:, None]
    img_ids[..., 2] = torch.arange(side)[None, :]
    x = dict(
        hidden_states=torch.randn(1, side * side, cfg["in_channels"], generator=gen),
        encoder_hidden_states=torch.randn(1, txt, cfg["joint_attention_dim"], generator=gen),
        pooled_projections=torch.randn(1, cfg["pooled_projection_dim"], generator=gen),
        timestep=torch.tensor([0.5]),
        img_ids=img_ids.reshape(side * side, 3),
        txt_ids=torch.zeros(txt, 3),
        guidance=torch.tensor([3.5]),
    )
    out = {}
    for k, v in x.items():
        if k.endswith("_ids"):
            out[k] = v.to(device)  # ids stay float32, as the pipeline passes them
        else:
            out[k] = v.to(device=device, dtype=dtype)
    return out


def forward(model, inputs, cuda):
    with torch.no_grad():
        out = model(**inputs, return_dict=False)[0]
    if cuda:
        torch.cuda.synchronize()
    return out


# --- measuring -------------------------------------------------------------------------

def pinned_of_torch():
    """Bytes held by torch's pinned host allocator, and how that was read."""
    stats_fn = getattr(torch.cuda, "host_memory_stats", None)
    if stats_fn is None:
        return None, "torch.cuda.host_memory_stats is missing in this torch"
    stats = stats_fn()
    for key in ("allocated_bytes.current", "allocated_bytes.all.current"):
        if key in stats:
            return int(stats[key]), (f"torch.cuda.host_memory_stats()['{key}'] (torch's pinned "
                                     "allocator, blocks rounded up to a power of two)")
    return None, f"torch.cuda.host_memory_stats() has no allocated_bytes key: {sorted(stats)[:8]}"


def pinned_of_params(model):
    return sum(t.numel() * t.element_size()
               for t in list(model.parameters()) + list(model.buffers())
               if t.device.type == "cpu" and t.is_pinned())


def timed_forwards(model, inputs, cuda, forwards, what):
    progress(f"{what}: warm-up forward")
    start = time.perf_counter()
    forward(model, inputs, cuda)
    warmup_ms = (time.perf_counter() - start) * 1e3
    times = []
    out = None
    for i in range(forwards):
        start = time.perf_counter()
        out = forward(model, inputs, cuda)
        times.append((time.perf_counter() - start) * 1e3)
        progress(f"{what}: forward {i + 1}/{forwards}: {times[-1]:.1f} ms")
    return out.detach().float().cpu(), warmup_ms, times


def run_config(name, args, cuda, dtype):
    """Builds a fresh model, offloads it as `name` says, times it; returns (row, output)."""
    row = {"label": LABELS[name], "status": "ok"}
    model = handle = inputs = out = None
    reset_peak_rss()
    try:
        progress(f"{name}: building the model ({args.size})")
        model = build_model(args.size, dtype)
        row["model_bytes"] = model_bytes(model)
        row["laid_out_bytes"] = ferry.torch.laid_out_bytes(model)
        device = "cuda" if cuda else "cpu"
        inputs = make_inputs(args.size, dtype, device)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.monotonic()
        if name == "diffusers-sync":
            model.enable_group_offload(onload_device=torch.device("cuda"), offload_type="block_level",
                                       num_blocks_per_group=1, use_stream=False)
        elif name == "diffusers-stream":
            model.enable_group_offload(onload_device=torch.device("cuda"), offload_type="block_level",
                                       num_blocks_per_group=1, use_stream=True)
        elif name == "ferry":
            config = {} if cuda else {"backend": "sim"}
            handle = ferry.torch.offload(model, budget=args.budget, blocks_per_group=1, **config)
        row["setup_s"] = round(time.monotonic() - start, 3)
        progress(f"{name}: set up in {row['setup_s']:.1f} s")
        out, row["warmup_ms"], row["forward_ms"] = timed_forwards(
            model, inputs, cuda, args.forwards, name)
        row["ms_per_forward"] = sum(row["forward_ms"]) / len(row["forward_ms"])
        row["rss_bytes"] = rss_bytes()
        row["rss_peak_bytes"] = peak_rss_bytes()
        row["torch_peak_vram_bytes"] = torch.cuda.max_memory_allocated() if cuda else 0
        if handle is not None:
            s = handle.stats()
            row["ferry_slab_bytes"] = s["slab_bytes"]
            row["pinned_bytes"] = s["host_pinned_bytes"]
            row["pinned_how"] = "ferry stats host_pinned_bytes (its one pinned arena)"
            row["ferry_stats"] = s
            row["ferry_backend"] = "cuda" if handle.device.type == "cuda" else "sim"
        else:
            row["ferry_slab_bytes"] = 0
            row["pinned_params_bytes"] = pinned_of_params(model)
            if cuda:
                row["pinned_bytes"], row["pinned_how"] = pinned_of_torch()
            else:
                row["pinned_bytes"], row["pinned_how"] = 0, "no CUDA: nothing pinned"
        # On sim the slab (the emulated device's memory) is host memory, in the RSS too.
        row["vram_peak_bytes"] = row["torch_peak_vram_bytes"] + row["ferry_slab_bytes"]
    except Exception as exc:  # one configuration failing must not hide the others
        progress(f"{name}: FAILED: {type(exc).__name__}: {exc}")
        row = {"label": LABELS[name], "status": "failed", "error": f"{type(exc).__name__}: {exc}",
               "model_bytes": row.get("model_bytes")}
        out = None
    finally:
        teardown_start = time.monotonic()
        if handle is not None and not handle.closed:
            handle.close()  # reads the weights back into plain CPU tensors, then frees ferry's
        del model, handle, inputs
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            host_empty = getattr(torch._C, "_host_emptyCache", None)
            if host_empty is not None:
                host_empty()  # give the pinned copies of diffusers-stream back
        progress(f"{name}: torn down in {time.monotonic() - teardown_start:.1f} s")
    return row, out


def run_reference(args, dtype):
    progress(f"plain-cpu: building the model ({args.size})")
    reset_peak_rss()
    model = build_model(args.size, dtype)
    inputs = make_inputs(args.size, dtype, "cpu")
    row = {"label": LABELS["plain-cpu"], "status": "ok"}
    out, row["warmup_ms"], row["forward_ms"] = timed_forwards(model, inputs, False, args.forwards,
                                                              "plain-cpu")
    row["ms_per_forward"] = sum(row["forward_ms"]) / len(row["forward_ms"])
    row["rss_bytes"] = rss_bytes()
    row["rss_peak_bytes"] = peak_rss_bytes()
    row.update(torch_peak_vram_bytes=0, ferry_slab_bytes=0, vram_peak_bytes=0, pinned_bytes=0,
               pinned_how="no CUDA: nothing pinned")
    del model, inputs
    gc.collect()
    return row, out


# --- report ----------------------------------------------------------------------------

def size_text(n):
    if n is None:
        return "? bytes"
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e3:.1f} kB"


def mib(n):
    return "-" if n is None else f"{n / 2**20:.1f}"


def table(result):
    lines = []
    m = result["model"]
    lines.append(f"diffusers_flux: FluxTransformer2DModel ({m['size']}: {m['config']['num_layers']} double, "
                 f"{m['config']['num_single_layers']} single blocks, {m['config']['num_attention_heads']} heads x "
                 f"{m['config']['attention_head_dim']}), {size_text(m['bytes'])} {m['dtype']}")
    i = result["inputs"]
    lines.append(f"  one forward: {i['image_tokens']} image + {i['text_tokens']} text tokens; "
                 f"{result['forwards']} timed forwards after 1 warm-up; fresh model per configuration")
    lines.append(f"  on {result['device']}; ferry backend {result['ferry_backend']}, VRAM budget "
                 f"{result['budget']} = {mib(result['budget_bytes'])} MiB")
    lines.append(f"  torch {result['versions']['torch']}, diffusers {result['versions']['diffusers']}, "
                 f"ferry {result['versions']['ferry']}, python {result['versions']['python']}")
    lines.append("")
    lines.append(f"  {'configuration':<18} {'status':<8} {'ms/forward':>11} {'VRAM MiB':>10} "
                 f"{'RSS MiB':>10} {'peak RSS':>10} {'pinned MiB':>11} {'max|diff|':>10}")
    for name, r in result["configs"].items():
        if r["status"] != "ok":
            lines.append(f"  {name:<18} {r['status']:<8} {r.get('reason') or r.get('error')}")
            continue
        diff = r.get("max_abs_diff")
        diff_text = "ref" if name == result["reference"] else "-" if diff is None else f"{diff:.3g}"
        lines.append(f"  {name:<18} {'ok':<8} {r['ms_per_forward']:>11.1f} {mib(r['vram_peak_bytes']):>10} "
                     f"{mib(r['rss_bytes']):>10} {mib(r.get('rss_peak_bytes')):>10} {mib(r['pinned_bytes']):>11} "
                     f"{diff_text:>10}")
    lines.append("")
    lines.append(f"  max|diff|: against {result['reference']} ({result['reference_why']})")
    lines.append("  VRAM: torch.cuda.max_memory_allocated + ferry's slab"
                 + ("" if result["ferry_backend"] == "cuda" else " (on sim the slab is host memory, in RSS too)")
                 + "; RSS: VmRSS after the timed forwards; peak RSS: VmHWM from the model's build on")
    for name, r in result["configs"].items():
        if r["status"] == "ok" and r.get("pinned_how"):
            lines.append(f"  pinned, {name}: {r['pinned_how']}")
    f = result["configs"].get("ferry", {})
    if f.get("status") == "ok":
        s = f["ferry_stats"]
        lines.append(f"  ferry: {s['onloads']} onloads, {s['bytes_h2d'] / 2**20:.1f} MiB H2D, "
                     f"{s['hits']} hits, {s['misses']} misses, {s['passes']} passes; slab "
                     f"{mib(s['slab_bytes'])} MiB of a {mib(s['vram_budget'])} MiB budget, "
                     f"{mib(s['streamed_bytes_per_pass'])} MiB streamed per pass")
    return "\n".join(lines)


def settle(result, outputs, args):
    """Fills in the budget and each output's difference from the reference, as far as
    they are known, and writes the JSON and the table; returns the table."""
    if result["model"].get("laid_out_bytes") is not None:
        result["budget_bytes"] = ferry.torch.parse_budget(args.budget,
                                                          result["model"]["laid_out_bytes"])
    ref = outputs.get(result["reference"])
    if ref is not None:
        result["reference_output_finite"] = bool(torch.isfinite(ref).all())
        result["reference_output_abs_mean"] = float(ref.abs().mean())
    for name, r in result["configs"].items():
        out = outputs.get(name)
        if r["status"] != "ok" or name == result["reference"] or out is None:
            continue
        r["output_finite"] = bool(torch.isfinite(out).all())
        if ref is not None:
            r["max_abs_diff"] = float((out - ref).abs().max())
            r.pop("max_abs_diff_why", None)
        else:
            r["max_abs_diff"] = None
            r["max_abs_diff_why"] = f"the reference {result['reference']} has not run"
    text = table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in (("diffusers_flux.json", json.dumps(result, indent=1, default=str)),
                       ("diffusers_flux.txt", text)):
        tmp = args.out / (name + ".tmp")
        tmp.write_text(body + "\n")
        tmp.replace(args.out / name)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--out", type=pathlib.Path, required=True, help="directory for the JSON and table")
    p.add_argument("--budget", default="50%", help="ferry's VRAM budget (default 50%% of the model)")
    p.add_argument("--forwards", type=int, default=3, help="timed forwards per configuration (3)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated subset of {','.join(CONFIGS)}")
    p.add_argument("--no-cuda", action="store_true", help="act as if CUDA were absent (ferry on sim)")
    args = p.parse_args(argv)
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in wanted if c not in CONFIGS]
    if bad or not wanted or args.forwards < 1:
        p.error(f"bad --configs {args.configs!r} or --forwards {args.forwards}")

    cuda = torch.cuda.is_available() and not args.no_cuda
    if args.size == "full" and not cuda:
        p.error("--size full needs CUDA (the model is 23.8 GB; without CUDA use --size tiny)")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    side, txt = TOKENS[args.size]
    result = {
        "model": {"size": args.size, "class": "diffusers.FluxTransformer2DModel",
                  "config": SIZES[args.size], "dtype": "bfloat16", "bytes": None},
        "inputs": {"image_tokens": side * side, "text_tokens": txt,
                   "hidden_states": [1, side * side, SIZES[args.size]["in_channels"]],
                   "encoder_hidden_states": [1, txt, SIZES[args.size]["joint_attention_dim"]],
                   "pooled_projections": [1, SIZES[args.size]["pooled_projection_dim"]],
                   "timestep": 0.5, "guidance": 3.5},
        "forwards": args.forwards,
        "device": (f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}" if cuda
                   else "cpu (no CUDA: " + ("--no-cuda" if args.no_cuda else "torch.cuda.is_available() is False") + ")"),
        "ferry_backend": "cuda" if cuda else "sim",
        "budget": args.budget,
        "budget_bytes": None,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "ferry": ferry.version(), "python": platform.python_version()},
        "env": {k: v for k, v in os.environ.items() if k.startswith("FERRY_")},
        "reference": "diffusers-stream" if cuda else "plain-cpu",
        "reference_why": ("the same weights and inputs under diffusers' own streamed offload" if cuda
                          else "no CUDA: a plain CPU forward of the same model stands in for diffusers-stream"),
        "configs": {},
    }
    progress(f"torch {torch.__version__}, diffusers {diffusers.__version__}, ferry {ferry.version()}, "
             f"on {result['device']}")

    outputs = {}
    if not cuda:
        row, outputs["plain-cpu"] = run_reference(args, dtype)
        result["configs"]["plain-cpu"] = row
    for name in CONFIGS:
        if name not in wanted:
            result["configs"][name] = {"label": LABELS[name], "status": "skipped",
                                       "reason": "not in --configs"}
            continue
        if name.startswith("diffusers") and not cuda:
            result["configs"][name] = {
                "label": LABELS[name], "status": "skipped",
                "reason": "needs CUDA: enable_group_offload onloads to a CUDA device, and "
                          + ("--no-cuda was given" if args.no_cuda else "torch.cuda.is_available() is False"),
            }
            progress(f"{name}: skipped (needs CUDA)")
            continue
        row, outputs[name] = run_config(name, args, cuda, dtype)
        result["model"]["bytes"] = row.pop("model_bytes") or result["model"]["bytes"]
        result["model"]["laid_out_bytes"] = (row.pop("laid_out_bytes", None)
                                             or result["model"].get("laid_out_bytes"))
        result["configs"][name] = row
        settle(result, outputs, args)  # a run cut short keeps what it measured
    if result["model"]["bytes"] is None:  # only the reference ran
        model = build_model(args.size, dtype)
        result["model"]["bytes"] = model_bytes(model)
        result["model"]["laid_out_bytes"] = ferry.torch.laid_out_bytes(model)
    result["elapsed_s"] = round(time.monotonic() - T0, 1)
    print(settle(result, outputs, args))
    progress(f"done; wrote {args.out}/diffusers_flux.json and .txt")
    return 1 if any(r["status"] == "failed" for r in result["configs"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
