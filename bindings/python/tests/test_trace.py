"""Runtime.trace_start/stop/dump: the C trace API from Python."""

import json

import pytest

import ferry
from conftest import BACKEND


def test_a_trace_of_a_pass_is_json_with_an_acquire_per_group(tmp_path):
    with ferry.Runtime(3 * 8192, backend=BACKEND) as rt:
        groups = [rt.define_group(f"g{i}") for i in range(6)]
        for g in groups:
            g.define_tensor("w", 8192)
        rt.plan()
        rt.seal()
        rt.trace_start()
        for g in groups:
            with g.acquired():
                pass
        rt.trace_stop()
        rt.synchronize()
        rt.trace_dump(tmp_path / "trace.json")
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    acquired = [e["args"]["group"] for e in events if e.get("cat") == "acquire"]
    assert acquired == [f"g{i}" for i in range(6)]


def test_dumping_without_a_trace_raises_wrong_phase(tmp_path):
    with ferry.Runtime("1MiB", backend=BACKEND) as rt:
        with pytest.raises(ferry.WrongPhaseError):
            rt.trace_dump(tmp_path / "trace.json")
