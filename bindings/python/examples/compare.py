#!/usr/bin/env python3
"""Runs a plain model and the same model offloaded through ferry; prints both timings,
whether the outputs agree bit for bit, and the figures handle.stats() reports.

    python3 examples/compare.py                          # sim backend on a CPU machine
    python3 examples/compare.py --backend cuda --dim 2048 --blocks 40 --budget 30%
    FERRY_SIM_H2D_GBPS=25 python3 examples/compare.py    # sim with a modeled PCIe link
"""

import argparse
import copy
import pathlib
import sys
import time

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # run from a checkout
import ferry  # noqa: E402
import ferry.torch  # noqa: E402


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 8, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm(x))


class Model(nn.Module):
    def __init__(self, d, n_blocks):
        super().__init__()
        self.proj_in = nn.Linear(d, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(n_blocks))
        self.proj_out = nn.Linear(d, d)

    def forward(self, x):
        x = self.proj_in(x)
        for block in self.blocks:
            x = block(x)
        return self.proj_out(x)


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def timed(model, x, iters, device):
    with torch.no_grad():
        out = model(x)  # warm-up (and, offloaded, the pass that learns the schedule)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            out = model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return out.cpu(), iters / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--blocks", type=int, default=16)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--budget", default="40%")
    p.add_argument("--blocks-per-group", type=int, default=1)
    p.add_argument("--backend", default="sim", choices=["auto", "sim", "cuda"])
    p.add_argument("--iters", type=int, default=5)
    args = p.parse_args()

    torch.manual_seed(0)
    model = Model(args.dim, args.blocks).eval()
    x = torch.randn(1, args.tokens, args.dim)
    plain_device = torch.device("cuda" if args.backend == "cuda" else "cpu")
    plain = copy.deepcopy(model).to(plain_device)
    want, plain_its = timed(plain, x.to(plain_device), args.iters, plain_device)
    del plain

    rss_before = rss()
    handle = ferry.torch.offload(model, budget=args.budget,
                                 blocks_per_group=args.blocks_per_group, backend=args.backend)
    got, ferry_its = timed(model, x, args.iters, handle.device)
    s = handle.stats()
    rss_after = rss()
    handle.close()

    fmt = ferry.format_bytes
    print(f"model            {fmt(s['model_bytes'])} in {s['groups']} groups "
          f"({s['resident_groups']} resident), backend {ferry.Backend(s['backend']).name.lower()}")
    print(f"plain            {plain_its:8.2f} it/s on {plain_device}")
    print(f"ferry            {ferry_its:8.2f} it/s, outputs identical: {torch.equal(got, want)}")
    print(f"VRAM (slab)      {fmt(s['slab_bytes'])} of a {fmt(s['vram_budget'])} budget, "
          f"peak in use {fmt(s['slab_used_peak_bytes'])}")
    print(f"host (pinned)    {fmt(s['host_pinned_bytes'])}; RSS growth after offload "
          f"{fmt(rss_after - rss_before)}")
    print(f"per pass         {fmt(s['streamed_bytes_per_pass'])} streamed; "
          f"H2D {fmt(s['bytes_h2d'])}, D2H {fmt(s['bytes_d2h'])} in {s['passes']} passes")
    print(f"acquires         {s['acquires']}: {s['resident_hits']} resident, {s['hits']} hits, "
          f"{s['misses']} misses; prefetches {s['prefetches_used']}/{s['prefetches_issued']} used")
    return 0 if torch.equal(got, want) else 1


if __name__ == "__main__":
    sys.exit(main())
