#!/usr/bin/env python3
"""Runs ferry-load on a small synthetic model and checks what it prints: every byte on the
device equal to the file's (pinned and disk tier), the disk tier holding most of the
model in the files, and the peak RSS of loading near the model's bytes.

    check_ferry_load.py FERRY_LOAD BUILD_DIR
"""
import re
import subprocess
import sys


def main(tool, build_dir):
    path = f"{build_dir}/ferry-load-check.safetensors"
    out = subprocess.run([tool, path, "--make", "0.04", "--passes", "1"],
                         capture_output=True, text=True, timeout=100)
    print(out.stdout)
    print(out.stderr, file=sys.stderr)
    if out.returncode != 0:
        print(f"ferry-load exited {out.returncode}", file=sys.stderr)
        return 1
    failures = []
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^  (pinned|disk tier)\s.*?\s(all|NO)$",
                                                           out.stdout, re.M)}
    if rows != {"pinned": "all", "disk tier": "all"}:
        failures.append(f"bytes-right rows are {rows}")
    peak = re.search(r"\(([0-9.]+) x model \+ slab", out.stdout)
    # The store is the model's bytes, the sim's slab host memory; at this small size the
    # reader threads' buffers (4 MiB each) show too.
    if peak is None or not 0.9 <= float(peak.group(1)) <= 1.4:
        failures.append(f"peak RSS figure {peak and peak.group(1)} not near 1 x (model + slab)")
    disk = re.search(r"host_disk_bytes ([0-9.]+) GB of ([0-9.]+) GB", out.stdout)
    if disk is None or not 0.5 <= float(disk.group(1)) / float(disk.group(2)) <= 0.8:
        failures.append(f"disk tier holds {disk and disk.groups()}, not about 3/4 of the model")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
