#!/usr/bin/env python3
"""Writes the seed corpus of ferry-fuzz-api (tests/fuzz/corpus/): a few call sequences in
the target's input encoding (fuzz_api.cpp, Driver::step), from which libFuzzer mutates.
Run it from anywhere; it rewrites the seed-*.bin files."""

import pathlib

CREATE, DESTROY, GROUP, TENSOR, SCHEDULE, PLAN, HOST_PTR, COPY_IN, SEAL = range(9)
ACQUIRE, RELEASE, DEVICE_PTR, SYNC, STATS, INFO, PHASE, STATUS, PROGRESS, CHECK = range(9, 19)
NULL_STREAM, WORKER_STREAM = 0, 1


def create(flags=0, budget=5, slots=2, cap=None):
    out = [CREATE, flags]
    if flags % 16 in (1, 2):
        out.append(7)
    out += [budget, slots]
    if flags >> 7:
        out.append(cap if cap is not None else 16)
    return out + [1]  # not a NULL config


def group(rt, name):
    return [GROUP, rt, name, 1]


def tensor(rt, g, name, size=6, mutable=False):
    return [TENSOR, rt, g, name, size, 0, 0, 0x11 if mutable else 0x01]


def model(rt=0, groups=4, mutable_every=3):
    out = []
    for g in range(groups):
        out += group(rt, g)
    for g in range(groups):
        out += tensor(rt, g, 0)
        if g % mutable_every == 0:
            out += tensor(rt, g, 1, size=3, mutable=True)
    return out


def passes(rt=0, groups=4, count=2, tensors=None):
    out = []
    for p in range(count):
        for g in range(groups):
            stream = WORKER_STREAM if (g + p) % 2 else NULL_STREAM
            out += [ACQUIRE, rt, g, stream, DEVICE_PTR, rt, g, 1, RELEASE, rt, g, stream]
    return out + [SYNC, rt, STATS, 0, rt]


SEEDS = {
    "lifecycle": create() + model() + [PLAN, 0, COPY_IN, 0, 0, 0, 3, 1, SEAL, 0] + passes(),
    "verify-sync": create(flags=0x30) + model() + [PLAN, 0, SEAL, 0] + passes(count=3),
    "capped-fallback": create(flags=0xC0, cap=2) + model(groups=6)
    + [PROGRESS, 0, 1, PLAN, 0, SEAL, 0] + passes(groups=6),
    "tight-budget": create(budget=3, slots=3) + model(groups=3) + [PLAN, 0, SEAL, 0]
    + [ACQUIRE, 0, 0, 0, ACQUIRE, 0, 1, 0, ACQUIRE, 0, 2, 0, ACQUIRE, 0, 0, 0]
    + [RELEASE, 0, 0, 0, RELEASE, 0, 0, 0, RELEASE, 0, 0, 0, SYNC, 0],
    "bad-configs": create(flags=1) + create(flags=2) + create(flags=3) + create(flags=4)
    + create(budget=0) + create(slots=1) + [CREATE, 0, 5, 2, 0],
    "handles": create() + create() + model(rt=0, groups=2) + model(rt=1, groups=2)
    + [GROUP, 255, 0, 1, TENSOR, 254, 0, 0, 6, 0, 0, 1, PLAN, 1, SEAL, 1]
    + [ACQUIRE, 1, 0, 0, ACQUIRE, 0, 3, 0, DESTROY, 0, ACQUIRE, 0, 0, 0, ACQUIRE, 0, 250, 0]
    + [INFO, 0, 1, 0, PHASE, 0, 0, STATUS, 30, SCHEDULE, 0, 3, 0, 1, 2, 1],
    "wrong-phases": create() + [SEAL, 0, ACQUIRE, 0, 0, 0, PLAN, 0, COPY_IN, 0, 0, 0, 0, 1]
    + model(groups=2) + [SEAL, 0, PLAN, 0, GROUP, 0, 9, 1, COPY_IN, 0, 0, 5, 9, 1]
    + [HOST_PTR, 0, 0, 7, SEAL, 0, PLAN, 0, PROGRESS, 0, 1, SYNC, 0],
}


def main():
    corpus = pathlib.Path(__file__).resolve().parent / "corpus"
    corpus.mkdir(exist_ok=True)
    for name, data in SEEDS.items():
        (corpus / f"seed-{name}.bin").write_bytes(bytes(data))


if __name__ == "__main__":
    main()
