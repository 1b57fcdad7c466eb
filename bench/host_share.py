#!/usr/bin/env python3
"""Host RAM of N processes offloading one model, with and without a shared host store.

Launches N ranks with torchrun (python -m torch.distributed.run, gloo on CPU), each
building the same model on the meta device and offloading it with
ferry.torch.offload(model, budget, weights=FILE[, share=NAME]) on the sim backend, then:

  - each rank's forward output is compared bitwise with the plain model's (rank 0);
  - each rank's proportional set size (Pss of /proc/PID/smaps_rollup) is read before
    offload() and again once every rank has offloaded; the growth is summed over ranks
    (shared pages count 1/N in each process, so the sum counts them once);
  - with share=, one more offload of the model in the last rank, timed: attaching to the
    sealed store, against the loader's offload (plan, read, seal), and how much of that
    rank's mapping of the segment is in 2 MiB pages (ShmemPmdMapped in /proc/self/smaps).

    python3 bench/host_share.py --ranks 4 --blocks 8 --width 1024 --out /tmp/share

Prints both runs side by side and writes OUT/host_share.json. The limits it checks:
sum of PSS growth <= 1.1 x model + N x slab with share= (on sim the slab is host memory),
attach <= 5% of the load. Exits 1 when a check fails or a run fails.
"""

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))


def build(blocks, width, device):
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.Linear(width, width, device=device), nn.GELU(),
                              nn.Linear(width, width, device=device))
                for _ in range(blocks))
            self.head = nn.Linear(width, 16, device=device)

        def forward(self, x):
            for block in self.blocks:
                x = x + block(x)
            return self.head(x)

    torch.manual_seed(0)
    return Model().eval()


def write_safetensors(path, state_dict):
    """A plain safetensors file (F32 only), without the safetensors package."""
    header, blobs, at = {}, [], 0
    for name, t in state_dict.items():
        data = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def pss_bytes():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss in /proc/self/smaps_rollup")


def segment_pages(segment):
    """Of this process's shared mappings of /dev/shm/SEGMENT: (bytes resident, bytes of
    them mapped by 2 MiB PMD entries), from /proc/self/smaps."""
    rss = pmd = 0
    ours = False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's first line
                ours = fields[-1] == f"/dev/shm/{segment}" and fields[1].endswith("s")
            elif ours and fields[0] == "Rss:":
                rss += int(fields[1]) * 1024
            elif ours and fields[0] == "ShmemPmdMapped:":
                pmd += int(fields[1]) * 1024
    return rss, pmd


def worker(args):
    import torch
    import torch.distributed as dist

    import ferry
    import ferry.torch

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    share = args.share or None
    model = build(args.blocks, args.width, "meta")
    x = torch.randn(4, args.width, generator=torch.Generator().manual_seed(1))
    dist.barrier()
    before = pss_bytes()
    started = time.perf_counter()
    handle = ferry.torch.offload(model, args.budget, weights=args.weights, share=share,
                                 backend="sim", progress=False, name="share-bench")
    offload_s = time.perf_counter() - started
    with torch.no_grad():
        out = model(x)
    dist.barrier()  # every rank offloaded: shared pages now count 1/N in each PSS
    after = pss_bytes()
    stats = handle.stats()
    dist.barrier()
    attach_s = attach_offload_s = None
    attach_rss = attach_pmd = None
    if share is not None and rank == world - 1:
        extra = build(args.blocks, args.width, "meta")
        started = time.perf_counter()
        second = ferry.torch.offload(extra, args.budget, share=share, backend="sim",
                                     progress=False, name="share-bench-attach")
        attach_offload_s = time.perf_counter() - started
        attach_s = second.timings["plan_s"]  # joining, mapping, registering
        assert second.host_share_role == "attached"
        attach_rss, attach_pmd = segment_pages(f"ferry-host.{share}")
        second.close()
    row = {"rank": rank, "pid": os.getpid(), "role": handle.host_share_role,
           "pss_before": before, "pss_after": after, "offload_s": offload_s,
           "attach_s": attach_s, "attach_offload_s": attach_offload_s,
           "attach_rss": attach_rss, "attach_pmd": attach_pmd,
           "plan_s": handle.timings["plan_s"], "load_s": handle.timings["load_s"],
           "slab_bytes": stats["slab_bytes"],
           "model_bytes": stats["model_bytes"],
           "bytes_read": handle.load_report.bytes_read if handle.load_report else 0}
    rows = [None] * world
    outs = [None] * world
    dist.all_gather_object(rows, row)
    dist.all_gather_object(outs, out)
    dist.barrier()
    handle.close()
    dist.barrier()
    if rank == 0:
        plain = build(args.blocks, args.width, "cpu")
        from ferry import Weights  # noqa: F401 - the plain model reads the same file
        import ferry.torch as ft  # noqa: F401
        state = {}
        with open(args.weights, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            base = 8 + n
            for name, info in header.items():
                a, b = info["data_offsets"]
                f.seek(base + a)
                state[name] = torch.frombuffer(bytearray(f.read(b - a)), dtype=torch.float32).view(info["shape"])
        plain.load_state_dict(state)
        with torch.no_grad():
            want = plain(x)
        for r, o in zip(rows, outs):
            r["bitwise"] = bool(torch.equal(o, want))
        pathlib.Path(args.result).write_text(json.dumps(rows))
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, share, result):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.ranks),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__,
           "--worker", "--weights", str(args.weights), "--share", share or "",
           "--blocks", str(args.blocks), "--width", str(args.width), "--budget", args.budget,
           "--result", str(result)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"host_share: torchrun failed with status {proc.returncode}")
    rows = json.loads(pathlib.Path(result).read_text())
    return {"rows": rows, "wall_s": time.perf_counter() - started}


def summarize(label, ranks, run_result):
    rows = run_result["rows"]
    model = rows[0]["model_bytes"]
    slab = rows[0]["slab_bytes"]
    growth = sum(r["pss_after"] - r["pss_before"] for r in rows)
    limit = 1.1 * model + ranks * slab
    loaders = [r for r in rows if r["role"] == "loader"]
    return {"label": label, "model_bytes": model, "slab_bytes": slab, "pss_growth_bytes": growth,
            "limit_bytes": limit, "bitwise": all(r["bitwise"] for r in rows),
            "roles": [r["role"] for r in rows], "bytes_read": [r["bytes_read"] for r in rows],
            # The loader's plan (creating, pinning), read and seal; without share=, rank 0's.
            "load_s": (loaders or rows)[0]["plan_s"] + (loaders or rows)[0]["load_s"],
            "offload_s": (loaders or rows)[0]["offload_s"],
            "attach_s": next((r["attach_s"] for r in rows if r["attach_s"] is not None), None),
            "attach_offload_s": next((r["attach_offload_s"] for r in rows
                                      if r["attach_offload_s"] is not None), None),
            "attach_rss": next((r["attach_rss"] for r in rows if r["attach_rss"] is not None), None),
            "attach_pmd": next((r["attach_pmd"] for r in rows if r["attach_pmd"] is not None), None)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--budget", default="25%")
    p.add_argument("--out", default="/tmp/ferry-host-share")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--share", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.weights = out / "model.safetensors"
    write_safetensors(args.weights, build(args.blocks, args.width, "cpu").state_dict())
    name = f"bench-{os.getpid()}"
    results = {"share": summarize("share=", args.ranks, run(args, name, out / "share.json")),
               "private": summarize("no share", args.ranks, run(args, None, out / "private.json"))}
    left = os.path.exists(f"/dev/shm/ferry-host.{name}")
    mib = 1 << 20
    print(f"host_share: {args.ranks} ranks under torchrun (gloo, CPU), ferry on sim; model "
          f"{results['share']['model_bytes'] / mib:.1f} MiB, slab "
          f"{results['share']['slab_bytes'] / mib:.1f} MiB per rank")
    print(f"  {'':10} {'sum of PSS growth MiB':>22} {'x model':>8} {'limit MiB':>10} "
          f"{'bitwise':>8} {'files read by':>14}")
    for key in ("share", "private"):
        r = results[key]
        readers = sum(1 for b in r["bytes_read"] if b > 0)
        print(f"  {r['label']:10} {r['pss_growth_bytes'] / mib:22.1f} "
              f"{r['pss_growth_bytes'] / r['model_bytes']:8.2f} {r['limit_bytes'] / mib:10.1f} "
              f"{'yes' if r['bitwise'] else 'NO':>8} {readers:>8} rank(s)")
    share = results["share"]
    ratio = share["attach_s"] / share["load_s"]
    print(f"  attach (ferry_plan: join, map, register) {share['attach_s'] * 1e3:.1f} ms against "
          f"the loader's plan, read and seal {share['load_s'] * 1e3:.1f} ms: {100 * ratio:.1f}% "
          f"(limit 5%)")
    if share["attach_rss"]:
        print(f"  the attaching rank's mappings of the segment: {share['attach_pmd'] / mib:.1f} of "
              f"{share['attach_rss'] / mib:.1f} MiB resident in 2 MiB pages (ShmemPmdMapped): "
              f"huge pages {'used' if share['attach_pmd'] > 0 else 'NOT used, 4 KiB pages'}")
    print(f"  whole offload(): attached {share['attach_offload_s'] * 1e3:.1f} ms (its seal onloads "
          f"the resident groups into its own slab), loader {share['offload_s'] * 1e3:.1f} ms")
    print(f"  segment left after every rank exited: {'YES' if left else 'none'}")
    checks = {
        "share PSS <= 1.1 x model + ranks x slab": share["pss_growth_bytes"] <= share["limit_bytes"],
        "bitwise equal, every rank, both runs": share["bitwise"] and results["private"]["bitwise"],
        "attach <= 5% of load": ratio <= 0.05,
        "no segment left": not left,
    }
    for what, ok in checks.items():
        print(f"  {'met   ' if ok else 'FAILED'} {what}")
    results["checks"] = checks
    results["attach_ratio"] = ratio
    (out / "host_share.json").write_text(json.dumps(results, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
