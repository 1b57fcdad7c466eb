#!/usr/bin/env python3
"""ferry-stat against live runtimes in other processes, spawned here (stat_target).

usage: test_ferry_stat.py FERRY_STAT STAT_TARGET

Each check is one behaviour. The permission check runs the tool as user 'nobody' and is
skipped, saying why, when this process cannot switch users.
"""

import json
import os
import pwd
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time

TOOL, TARGET = sys.argv[1], sys.argv[2]
# The targets are sim runtimes whatever the caller's environment asks of other suites.
for variable in ("FERRY_BACKEND", "FERRY_TRACE", "FERRY_STATS"):
    os.environ.pop(variable, None)
EXIT_NO_SUCH_RUNTIME, EXIT_USAGE, EXIT_PERMISSION, EXIT_INCOMPATIBLE, EXIT_STALE = 1, 2, 3, 4, 5
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


class Target:
    """A stat_target process; its first output line is kept (stats JSON, or "ready")."""

    def __init__(self, name, mode):
        self.name = name
        self.proc = subprocess.Popen([TARGET, name, mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.first_line = self.proc.stdout.readline()
        assert self.first_line, f"stat_target {name} {mode} printed nothing"
        self.pid = self.proc.pid
        self.segment = f"/dev/shm/ferry.{self.pid}.{name}"

    def stop(self):
        """Closes stdin: the target destroys its runtime and exits 0."""
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)


def tool(*args, user=None):
    out = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, timeout=60,
                         user=user)
    return out.returncode, out.stdout, out.stderr


def runtime_of(document, pid):
    found = [r for r in document["runtimes"] if r["pid"] == pid]
    assert len(found) == 1, f"pid {pid} in {document}"
    return found[0]


@check
def the_segment_is_owner_only_and_removed_at_destroy():
    t = Target("seg-mode", "hold")
    assert os.path.exists(t.segment), t.segment
    assert os.stat(t.segment).st_mode & 0o777 == 0o600, oct(os.stat(t.segment).st_mode)
    t.stop()
    assert not os.path.exists(t.segment), f"{t.segment} left after destroy"


@check
def the_list_shows_a_live_runtime_with_its_pid_and_name():
    with Target("listed", "hold") as t:
        rc, out, err = tool()
        assert rc == 0, (rc, err)
        assert re.search(rf"^{t.pid}\s+listed\s+sim\s", out, re.M), out


@check
def the_detail_view_shows_totals_and_the_group_table():
    with Target("detailed", "hold") as t:
        rc, out, err = tool(f"{t.pid}/detailed")
        assert rc == 0, (rc, err)
        assert f"ferry runtime 'detailed': pid {t.pid}, sim" in out, out
        assert "GROUP" in out and "block.11" in out, out
        assert "60 = " in out, out  # 5 passes of 12 groups


@check
def json_matches_the_runtimes_own_stats_call():
    with Target("json", "hold") as t:
        own = json.loads(t.first_line)
        rc, out, err = tool(t.pid, "--json", "--interval", "0")
        assert rc == 0, (rc, err)
        rt = runtime_of(json.loads(out), t.pid)
        assert rt["name"] == "json" and rt["backend"] == "sim" and rt["phase"] == "SEALED"
        assert rt["stats"] == own, (rt["stats"], own)
        assert own["acquires"] == own["resident_hits"] + own["hits"] + own["misses"] == 60
        assert len(rt["groups"]) == 12
        assert sum(g["onloads"] for g in rt["groups"]) == own["onloads"]
        assert all(g["timed_onloads"] <= g["onloads"] for g in rt["groups"])


PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*)\})? '
                       r'(-?[0-9.eE+-]+|NaN|[+-]Inf)$')


@check
def prometheus_text_parses_and_carries_the_counters():
    with Target("prom", "hold") as t:
        own = json.loads(t.first_line)
        rc, out, err = tool(t.pid, "--prometheus", "--interval", "0")
        assert rc == 0, (rc, err)
        typed, samples = {}, {}
        for line in out.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                assert kind in ("counter", "gauge"), line
                typed[name] = kind
                continue
            if line.startswith("#"):
                continue
            m = PROM_LINE.match(line)
            assert m, f"not exposition format: {line!r}"
            name, labels, value = m.groups()
            assert name.startswith("ferry_") and name in typed, line
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
            if labels.get("pid") == str(t.pid) and "group" not in labels:
                samples[name] = float(value)
        assert samples["ferry_acquires_total"] == own["acquires"]
        assert samples["ferry_bytes_h2d_total"] == own["bytes_h2d"]
        assert samples["ferry_slab_used_bytes"] == own["slab_used_bytes"]
        assert typed["ferry_acquires_total"] == "counter"
        assert typed["ferry_slab_used_bytes"] == "gauge"


@check
def watch_computes_rates_between_snapshots():
    with Target("watched", "loop") as t:
        rc, out, err = tool(t.pid, "--watch", "0.3", "--count", "2", "--json")
        assert rc == 0, (rc, err)
        frames = [json.loads(line) for line in out.splitlines()]
        assert len(frames) == 2, out
        rates = runtime_of(frames[1], t.pid)["rates"]
        assert 0.25 < rates["interval_s"] < 1.0, rates
        assert rates["passes_per_s"] > 0 and rates["acquires_per_s"] > 0, rates
        assert rates["h2d_bytes_per_s"] > 0, rates
        rc, out, err = tool(t.pid, "--watch", "0.2", "--count", "1")
        assert rc == 0 and "passes/s" in out, (rc, out, err)


@check
def a_process_without_a_runtime_is_no_such_runtime():
    rc, out, err = tool(os.getpid())
    assert rc == EXIT_NO_SUCH_RUNTIME and "no such runtime" in err, (rc, err)
    gone = subprocess.Popen(["true"])
    gone.wait()
    rc, out, err = tool(gone.pid)
    assert rc == EXIT_NO_SUCH_RUNTIME and "no such process" in err, (rc, err)


@check
def bad_arguments_are_a_usage_error():
    for args in (["--bogus"], ["12x"], ["1/"], ["--json", "--prometheus"], ["--count", "2"]):
        rc, out, err = tool(*args)
        assert rc == EXIT_USAGE and "usage:" in err, (args, rc, err)


@check
def a_killed_process_leaves_a_stale_segment_that_remove_stale_removes():
    t = Target("killed", "hold")
    t.proc.send_signal(signal.SIGKILL)
    t.proc.wait(timeout=30)
    assert os.path.exists(t.segment)
    rc, out, err = tool(t.pid)
    assert rc == EXIT_STALE and "is gone" in err, (rc, err)
    rc, out, err = tool()
    assert rc == 0 and "remove-stale" in out, (rc, out)
    rc, out, err = tool("--remove-stale", t.pid)
    assert rc == 0 and f"ferry.{t.pid}.killed" in out, (rc, out, err)
    assert not os.path.exists(t.segment)
    rc, out, err = tool(t.pid)
    assert rc == EXIT_NO_SUCH_RUNTIME, (rc, err)


@check
def another_users_runtime_is_permission_denied():
    if os.geteuid() != 0:
        return "SKIP: not root, so no second user to read the segment as"
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return "SKIP: no user 'nobody' on this machine"
    probe = subprocess.run([TOOL, "--help"], capture_output=True, user=nobody.pw_uid)
    if probe.returncode != 0:
        return f"SKIP: user 'nobody' cannot run {TOOL}"
    with Target("private", "hold") as t:
        rc, out, err = tool(t.pid, user=nobody.pw_uid)
        assert rc == EXIT_PERMISSION and "permission denied" in err, (rc, err)
        rc, out, err = tool(t.pid)  # its owner still reads it
        assert rc == 0, (rc, err)


@check
def a_segment_of_another_layout_version_is_incompatible():
    path = f"/dev/shm/ferry.{os.getpid()}.other-layout"
    magic = int.from_bytes(b"frystat1", "little")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, struct.pack("<QII", magic, 999, 512) + bytes(4096 - 16))
        os.close(fd)
        rc, out, err = tool(f"{os.getpid()}/other-layout")
        assert rc == EXIT_INCOMPATIBLE and "layout version 999" in err, (rc, err)
        rc, out, err = tool("--json", "--interval", "0")
        problems = [p for p in json.loads(out)["problems"] if p["pid"] == os.getpid()]
        assert problems and problems[0]["state"] == "incompatible", out
    finally:
        os.unlink(path)


@check
def the_trace_is_json_ordered_per_track_and_copies_overlap_compute():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        subprocess.run([TARGET, "traced", "trace", path], check=True, timeout=120)
        with open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names[0] == "copy stream" and len(names) >= 3, names
    timed = [e for e in events if e["ph"] in ("X", "i")]
    for tid in names:
        ts = [e["ts"] for e in timed if e["tid"] == tid]
        assert ts == sorted(ts), f"track {tid} out of order"
    copies = [e for e in timed if e["cat"] == "onload"]
    compute = [e for e in timed if e["cat"] == "compute"]
    waits = [e for e in timed if e["cat"] == "wait"]
    assert copies and compute and waits, {e["cat"] for e in timed}
    assert all(e["tid"] == 0 and e["args"]["bytes"] > 0 for e in copies)
    assert all(e["tid"] != 0 for e in compute + waits)

    def overlaps(a, b):
        return a["ts"] < b["ts"] + b["dur"] and b["ts"] < a["ts"] + a["dur"]

    hidden = sum(1 for c in copies if any(overlaps(c, k) for k in compute))
    assert hidden >= len(copies) // 2, f"only {hidden} of {len(copies)} copies overlap compute"


def main():
    failed = skipped = 0
    for fn in CHECKS:
        start = time.monotonic()
        try:
            outcome = fn() or "ok"
        except Exception as exc:  # report every check, then fail
            failed += 1
            outcome = f"FAILED: {type(exc).__name__}: {exc}"
        skipped += outcome.startswith("SKIP")
        print(f"{fn.__name__}: {outcome} ({time.monotonic() - start:.1f} s)", flush=True)
    print(f"{len(CHECKS) - failed - skipped} of {len(CHECKS)} checks passed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
