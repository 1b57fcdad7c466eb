"""ferry.torch: offload an nn.Module block by block, with ferry underneath.

    handle = ferry.torch.offload(model, budget="8GiB", blocks_per_group=1)
    ... model(x) ...                   # outputs identical to the plain model
    handle.stats(); handle.close()     # close() restores plain CPU parameters

Groups: the containers of repeated blocks (``nn.ModuleList`` / ``nn.Sequential``, at any
depth: ``blocks``, ``encoder.block``, ``model.layers``; see _find_containers), or those
named by ``blocks=``, are split into groups of ``blocks_per_group`` consecutive blocks;
every other parameter and buffer (embeddings, norms, projections, tensors shared between
blocks) forms one more group, "root", held for the whole forward of the model, which the
planner keeps resident when the budget allows.

Loading copies each group's tensors into ferry's host store and then frees the module's
own copy, so host memory stays near one copy of the model. With ``weights=`` (safetensors
files, see offload) ferry reads the tensors of the model's state dict straight from the
files into the store instead, and the model may be built on the meta device: no weight
is ever held in torch memory. During forward a pre-hook
acquires the group and points each parameter's ``.data`` (and each buffer) at a view of
the group's slot; a post-hook releases it and points them back at empty placeholders.

LoRA (PEFT's tuner layers, as diffusers' ``load_lora_weights`` makes them): adapter
tensors (``lora_A``, ``lora_B``, ...) added inside offloaded blocks stay torch tensors on
the device, beside ferry's slab, within ``adapter_budget`` (reserved out of the budget at
offload); merges and unmerges of the frozen weights ferry holds (``fuse_lora``,
``unfuse_lora``, PEFT's ``merge``/``unmerge``) run on a host copy of one weight at a
time and reach the store through ferry_tensor_update: no reload, no writeback.
``handle.editing()`` shows every parameter's real shape for loaders that check it.

This is the only module of the package that imports torch.
"""

import collections
import contextlib
import functools
import inspect
import itertools
import json
import operator
import os
import re
import sys
import time

import torch
import torch.utils.dlpack

from . import _heap, _progress
from . import runtime as _runtime
from .errors import (
    AlreadyOffloadedError,
    BudgetTooSmallError,
    ClosedError,
    FerryError,
    GroupBusyError,
    HostShareError,
    InvalidArgumentError,
    ModelChangedError,
    Status,
    WeightsMismatchError,
)
from .runtime import Backend, DType
from .weights import Weights
from .units import format_bytes, parse_bytes

__all__ = ["offload", "OffloadHandle", "handle_of", "parse_budget", "resolve_weights"]

ROOT_GROUP = "root"

# While loading, the C heap is trimmed after every this many bytes of the module's tensors
# are released (and once at the end), so host memory stays near one copy of the model even
# at its peak. A trim costs about what the kernel takes to free the pages it returns.
_TRIM_EVERY = 64 << 20

# torch >= 2.0 hands kwargs to pre-hooks (so inputs given by keyword can be moved too);
# torch >= 2.1 can run a forward hook even when forward raises (so groups are released).
_PRE_HOOK_KWARGS = "with_kwargs" in inspect.signature(
    torch.nn.Module.register_forward_pre_hook).parameters
_POST_HOOK_ALWAYS = "always_call" in inspect.signature(
    torch.nn.Module.register_forward_hook).parameters

# id() of every tensor object under an open handle -> that handle (offloading twice is
# refused). The handle holds the tensors, so their ids stay theirs until close().
_owners = {}


def parse_budget(budget, model_bytes):
    """Bytes from an int, a size string ("8GiB", "512MB") or a share of the model's
    bytes ("40%")."""
    if isinstance(budget, str) and budget.strip().endswith("%"):
        try:
            share = float(budget.strip()[:-1])
        except ValueError:
            raise InvalidArgumentError(f"ferry.torch: bad budget {budget!r}") from None
        if share <= 0:
            raise InvalidArgumentError(f"ferry.torch: budget must be > 0, not {budget!r}")
        return int(model_bytes * share / 100.0)
    try:
        return parse_bytes(budget)
    except ValueError as exc:
        raise InvalidArgumentError(f"ferry.torch: {exc}") from None


def handle_of(module):
    """The open OffloadHandle a module (or any of its tensors) is offloaded by, or None."""
    for t in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
        handle = _owners.get(id(t))
        if handle is not None:
            return handle
    return None


class _Entry:
    """One tensor ferry holds: a parameter (its .data is swapped) or a buffer (swapped
    in every module that registers it)."""

    __slots__ = ("name", "tensor", "param", "locations", "slots", "dtype", "shape", "nbytes",
                 "mutable", "ferry", "placeholder", "key", "original")

    def __init__(self, name, tensor, param):
        self.name = name
        self.tensor = tensor  # the Parameter, or the buffer as first registered
        self.param = param
        self.locations = []  # buffers: (module, attribute) pairs
        self.slots = []  # parameters: (module, attribute) pairs (weights= on meta)
        self.dtype = tensor.dtype
        self.shape = tuple(tensor.shape)
        self.nbytes = tensor.numel() * tensor.element_size()
        self.mutable = False
        self.ferry = None  # ferry.Tensor
        self.placeholder = None
        self.key = None  # weights=: its name in the files (None: copied from the module)
        self.original = None  # weights=: (tensor, data) as offload() found them

    @property
    def on_meta(self):
        return self.tensor.device.type == "meta"

    def release_to(self, placeholder):
        """Points the entry at its empty placeholder once its bytes are in the store. A
        parameter on meta cannot take another device's data (set_data refuses it), so it
        is replaced, in every module holding it, by a Parameter of the placeholder."""
        self.placeholder = placeholder
        if self.param and self.on_meta:
            new = torch.nn.Parameter(placeholder, requires_grad=self.tensor.requires_grad)
            new.__dict__.update(self.tensor.__dict__)
            self.swap_param(new)
            return
        self.point_at(placeholder)
        if not self.param and not self.on_meta:
            # The entry keeps the buffer object for its identity, not its bytes.
            self.tensor.data = placeholder

    def swap_param(self, new):
        for module, attr in self.slots:
            module._parameters[attr] = new
        self.tensor = new

    def put_back(self):
        """weights=: the model's own tensors again, exactly as offload() found them."""
        tensor, data = self.original
        if self.param:
            if self.tensor is not tensor:
                self.swap_param(tensor)
            elif data is not None:
                tensor.data = data
        else:
            if data is not None:
                tensor.data = data
            self.tensor = tensor
            self.point_at(tensor)

    def point_at(self, value):
        if self.param:
            self.tensor.data = value
        else:
            for module, attr in self.locations:
                module._buffers[attr] = value

    def restore(self):
        """Gives the tensor back its bytes from the host store (PLANNED or SEALED). A
        buffer gets its own object back in every module that registers it: the load
        emptied that object (.data), and it may be aliased elsewhere (a rotary
        embedding's original_inv_freq, the caller's own reference)."""
        value = self.read_back()
        if not self.param and self.on_meta:
            self.tensor = value  # a buffer built on meta: the bytes are its own now
        else:
            self.tensor.data = value
        if not self.param:
            self.point_at(self.tensor)

    def read_back(self):
        """A CPU tensor with the tensor's bytes, from ferry's host store or, for a tensor
        on the disk tier, from its file (PLANNED or SEALED)."""
        out = torch.empty(self.shape, dtype=self.dtype)
        self.ferry.copy_out_address(out.data_ptr(), self.nbytes)
        return out


class _GroupPlan:
    def __init__(self, name, modules):
        self.name = name
        self.modules = modules  # blocks of the group (empty for root)
        self.entries = []
        self.ferry = None  # ferry.Group
        self.split = False  # the planner keeps a head resident and streams the tail
        self.views = {}  # placement -> list of torch tensors, one per entry


_CONTAINERS = (torch.nn.ModuleList, torch.nn.Sequential)

# A container the guess finds with less than this share of the bytes of the largest one
# it finds stays in root (a small MLP's Sequential, a two-block token refiner).
_SMALL_CONTAINER_SHARE = 1 / 8


def _module_bytes(module):
    """Bytes of the distinct tensors of module and its submodules."""
    seen = {}
    for t in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def _laid_out(nbytes):
    """A tensor's bytes at its 256-byte aligned offset in a group image."""
    return -(-nbytes // 256) * 256


def laid_out_bytes(module):
    """The bytes of module's distinct tensors as ferry lays them out (each padded to its
    256-byte alignment): what a budget share ("50%") is a share of."""
    seen = {}
    for t in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
        seen[id(t)] = _laid_out(t.numel() * t.element_size())
    return sum(seen.values())


def _qualify(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _is_repeated(container):
    """A container of repeated blocks: at least two children hold tensors, and more than
    half of those are of one class (a Sequential of embedding, body and head is not, nor
    a FeedForward's [GELU, Dropout, Linear])."""
    holders = [c for c in container.children() if _module_bytes(c) > 0]
    classes = collections.Counter(type(c) for c in holders)
    return len(holders) >= 2 and 2 * max(classes.values()) > len(holders)


def _containers(model):
    """[(name, container, repeated), ...]: the ModuleLists and Sequentials holding tensors,
    in definition order, walking down from the model (itself included) but never into
    the blocks of a container of repeated blocks."""
    out = []
    seen = set()

    def walk(name, module):
        if id(module) in seen:
            return
        seen.add(id(module))
        if isinstance(module, _CONTAINERS) and _module_bytes(module) > 0:
            repeated = _is_repeated(module)
            out.append((name, module, repeated))
            if repeated:
                return
        for child_name, child in module.named_children():
            walk(_qualify(name, child_name), child)

    walk("", model)
    return out


def _find_containers(model):
    """[(name, container), ...] to split when the caller names none: the containers of
    repeated blocks that _containers finds (the first on each path down from the model),
    less those smaller than _SMALL_CONTAINER_SHARE of the largest, which stay in root."""
    found = [(name, c, _module_bytes(c)) for name, c, repeated in _containers(model) if repeated]
    if not found:
        return []
    largest = max(size for _, _, size in found)
    return [(name, c) for name, c, size in found if size >= largest * _SMALL_CONTAINER_SHARE]


def _named_containers(model, blocks):
    """[(name, container), ...] for blocks= (a qualified name or a list of them)."""

    def refuse(why):
        chosen = {id(c) for _, c in _find_containers(model)}
        candidates = ", ".join(
            f"{'*' if id(c) in chosen else ''}{n or repr('')} ({len(c)} blocks, "
            f"{format_bytes(_module_bytes(c))})"
            for n, c, _ in _containers(model)) or "none"
        raise InvalidArgumentError(
            f"ferry.torch.offload: {why}; blocks= takes the qualified names of ModuleList / "
            f"Sequential containers whose children are the blocks; candidates (* = split "
            f"by default): {candidates}")

    if isinstance(blocks, str):
        names = [blocks]
    elif isinstance(blocks, (list, tuple)):
        names = list(blocks)
    else:
        refuse(f"blocks= is a name or a list of names, not {blocks!r}")
    out = []
    for name in names:
        if not isinstance(name, str):
            refuse(f"blocks= names must be strings, not {name!r}")
        try:
            module = model.get_submodule(name)
        except AttributeError:
            refuse(f"blocks={name!r} names no submodule of {type(model).__name__}")
        if not isinstance(module, _CONTAINERS):
            refuse(f"blocks={name!r} is {type(module).__name__}, not a ModuleList or Sequential")
        if len(module) == 0:
            refuse(f"blocks={name!r} is an empty {type(module).__name__}")
        for other, _ in out:
            if other == name or not other or name.startswith(other + ".") \
                    or not name or other.startswith(name + "."):
                refuse(f"blocks={name!r} and {other!r} overlap: one is inside the other")
        out.append((name, module))
    return out


_MISSING = object()
_numel = torch.Tensor.numel

# The tensors PEFT's LoRA layers add (lora_A.<adapter>.weight, lora_B..., lora_embedding_A
# .<adapter>, lora_magnitude_vector.<adapter>.weight): adapters, not changes of the model.
_ADAPTER_NAME = re.compile(r"(^|\.)lora_[A-Za-z_]+\.")


def _is_adapter(name):
    return _ADAPTER_NAME.search(name) is not None


def _owner_of_layer(layer):
    """The open handle holding a tuner layer's base weights, with those (attribute,
    Parameter) pairs, or (None, [])."""
    base = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
    held = [(attr, p) for attr, p in base._parameters.items()
            if p is not None and id(p) in _owners]
    if not held:
        return None, []
    return _owners[id(held[0][1])], held


def _dispatching(method):
    """PEFT's merge / unmerge of a tuner layer, sent through the handle that holds the
    layer's base weights (OffloadHandle._edit_layer); any other layer runs it as is."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        handle, held = _owner_of_layer(self)
        if handle is None or handle.closed:
            return method(self, *args, **kwargs)
        return handle._edit_layer(self, method, held, args, kwargs)

    run._ferry_original = method
    return run


def _route_peft_merges():
    """Routes merge and unmerge of every PEFT tuner layer class imported so far through
    _dispatching (once per class; layers not offloaded by ferry are not affected)."""
    tuners = sys.modules.get("peft.tuners.tuners_utils")
    if tuners is None:
        return
    pending = [tuners.BaseTunerLayer]
    seen = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        for name in ("merge", "unmerge"):
            method = cls.__dict__.get(name)
            if callable(method) and not hasattr(method, "_ferry_original"):
                setattr(cls, name, _dispatching(method))


class _Watch:
    """What a forward must find as offload() left it, checked by identity before a group
    is acquired: the parameters, buffer names and submodules of the modules the group
    covers, the buffers ferry does not hold there, and the group's own tensors pointing
    at their placeholders. A few microseconds for a block of a dozen tensors."""

    __slots__ = ("value_dicts", "values", "buffer_dicts", "buffer_keys", "dicts", "lens",
                 "expect", "params")

    def __init__(self, modules, entries, ferry_buffers):
        """modules: those the group covers; entries: the group's own; ferry_buffers:
        (id(module), attribute) of every buffer location ferry holds (each is checked by
        the group that holds it)."""
        self.value_dicts = [d for m in modules for d in (m._parameters, m._modules)]
        self.values = list(itertools.chain.from_iterable(map(dict.values, self.value_dicts)))
        self.buffer_dicts = [m._buffers for m in modules]
        self.buffer_keys = list(itertools.chain.from_iterable(self.buffer_dicts))
        self.dicts = self.value_dicts + self.buffer_dicts
        self.lens = list(map(len, self.dicts))
        self.expect = [(m._buffers, k, v) for m in modules for k, v in m._buffers.items()
                       if (id(m), k) not in ferry_buffers]
        self.expect += [(m._buffers, attr, e.placeholder)
                        for e in entries if not e.param for m, attr in e.locations]
        self.params = [e.tensor for e in entries if e.param]

    def unchanged(self):
        """True when nothing changed (the group must not be held)."""
        return (
            list(map(len, self.dicts)) == self.lens
            and all(map(operator.is_, itertools.chain.from_iterable(
                map(dict.values, self.value_dicts)), self.values))
            and all(map(operator.is_, itertools.chain.from_iterable(self.buffer_dicts),
                        self.buffer_keys))
            and all(d.get(k, _MISSING) is v for d, k, v in self.expect)
            and not any(map(_numel, self.params))
        )


def _container_blocks(model, blocks=None):
    """[(qualified prefix, [(name, block), ...]), ...] of the containers to split."""
    chosen = _find_containers(model) if blocks is None else _named_containers(model, blocks)
    return [(name, list(c.named_children())) for name, c in chosen]


def _own_tensors(module, prefix):
    """Parameters and non-empty buffers of module and its submodules, qualified."""
    out = []
    for name, p in module.named_parameters(prefix=prefix):
        out.append((name, p, True))
    for name, b in module.named_buffers(prefix=prefix):
        if b is not None:
            out.append((name, b, False))
    return out


def _resolve_mutable(mutable, entries):
    if mutable is None:
        return set()
    if callable(mutable):
        return {e.name for e in entries if mutable(e.name, e.tensor)}
    if isinstance(mutable, str):
        mutable = [mutable]
    wanted = set(mutable)
    chosen = set()
    unmatched = set(wanted)
    for e in entries:
        for w in wanted:
            if e.name == w or e.name.startswith(w + "."):
                chosen.add(e.name)
                unmatched.discard(w)
    if unmatched:
        raise InvalidArgumentError(
            "ferry.torch.offload: mutable names match no parameter or buffer: "
            + ", ".join(sorted(unmatched))
        )
    return chosen


def _dtype_of(t):
    try:
        return DType.of(t.dtype)
    except FerryError:
        return DType.UNKNOWN


class OffloadHandle:
    """What offload() returns: the model's link to its ferry runtime.

    stats() gives the runtime's counters, close() restores the plain CPU model. Use as a
    context manager to close on exit."""

    def __init__(self, model, rt, groups, entries, device, budget=None, adapter_budget=0):
        self._model = model
        self._rt = rt
        self._groups = groups
        self._by_name = {g.name: g for g in groups}
        self._entries = entries
        self._device = device  # torch.device views live on
        self._hook_held = set()  # groups acquired by the forward hooks
        self._user_held = {}  # group -> count, acquired through acquired()
        self._hooks = []
        self._root = self._by_name.get(ROOT_GROUP)
        self._closed = False
        self._watches = {}  # group -> _Watch (_watch_model)
        self._checked = set()  # groups whose watch passed in this forward
        self._owned = []  # id() of each tensor registered in _owners
        self.load_report = None  # weights=: the ferry.LoadReport of the files' read
        self.host_share_role = "none"  # share=: "loader" or "attached"
        self.timings = {}  # plan_s, load_s of offload()
        self._group_of_tensor = {}
        for g in groups:
            for e in g.entries:
                self._group_of_tensor[id(e.tensor)] = g
        self._budget = budget  # VRAM for ferry's slab and the LoRA adapters
        self.adapter_budget = adapter_budget  # of it, reserved for the adapters
        self._editing = False
        self._in_edit = set()  # id() of tuner layers whose merge runs now

    # --- public ------------------------------------------------------------------

    @property
    def closed(self):
        return self._closed

    @property
    def runtime(self):
        """The underlying ferry.Runtime (do not close it directly: use close())."""
        self._check_open()
        return self._rt

    @property
    def device(self):
        """The torch device the parameters live on during forward (cpu on sim)."""
        return self._device

    def groups(self):
        """[{"name", "tensors", "bytes", "resident", "size_class", "image_bytes"}] in
        definition order."""
        self._check_open()
        out = []
        for g in self._groups:
            info = g.ferry.info()
            out.append({
                "name": g.name,
                "tensors": [e.name for e in g.entries],
                "bytes": sum(e.nbytes for e in g.entries),
                **info,
            })
        return out

    def stats(self):
        """The runtime's counters: a dict with ferry_stats' field names."""
        self._check_open()
        return self._rt.stats()

    def synchronize(self):
        """Writes back updated mutable tensors to the host store and waits for copies."""
        self._check_open()
        self._rt.synchronize()

    def adapter_bytes(self):
        """Bytes of the LoRA adapter tensors (lora_A, lora_B, ...) in the model now: they
        live on the device beside ferry's slab and count against the budget."""
        seen = {}
        for mname, m in self._model.named_modules():
            for attr, p in m._parameters.items():
                if p is not None and _is_adapter(_qualify(mname, attr)):
                    seen[id(p)] = p.numel() * p.element_size()
        return sum(seen.values())

    @contextlib.contextmanager
    def editing(self):
        """A block for changing the model's weights and adapters outside forward:

            with handle.editing():
                pipe.load_lora_weights(path, adapter_name="style")
                pipe.fuse_lora()

        Inside it every parameter ferry holds shows its real shape and dtype (its .data
        is a zero-stride view of one element: readable, not writable), as loaders that
        check base weights' shapes (diffusers' load_lora_weights) need; outside forward
        it is an empty placeholder. PEFT merges and unmerges (fuse_lora, unfuse_lora)
        reach ferry through Tensor.update inside or outside the block. No forward runs
        inside it. At its end the adapters' bytes are checked against adapter_budget,
        and a parameter given new .data there (other than through a merge) is a
        ModelChangedError: its bytes would go nowhere."""
        self._check_open()
        if self._editing:
            raise InvalidArgumentError("ferry.torch: editing() blocks do not nest")
        if self._hook_held or self._user_held:
            raise GroupBusyError(
                "ferry.torch: editing() while groups are held (inside forward or "
                "acquired()); leave them first")
        _route_peft_merges()
        shown = {}
        for e in self._entries:
            if e.param:
                key = (e.dtype, e.placeholder.device)
                if key not in shown:
                    shown[key] = torch.zeros((), dtype=e.dtype, device=e.placeholder.device)
                e.point_at(shown[key].expand(e.shape))
        self._editing = True
        try:
            yield self
        finally:
            self._editing = False
            ptrs = {one.data_ptr() for one in shown.values()}
            lost = [e.name for e in self._entries
                    if e.param and e.tensor.data.data_ptr() not in ptrs]
            for e in self._entries:
                if e.param:
                    e.point_at(e.placeholder)
        _route_peft_merges()  # classes PEFT imported inside the block
        if lost:
            raise ModelChangedError(
                f"ferry.torch: {len(lost)} parameter(s) ferry holds were given new .data "
                f"inside editing(), which would write nowhere: {', '.join(lost[:12])}. "
                "Change frozen weights through a LoRA merge (fuse_lora) or "
                "handle.runtime's Tensor.update; else close(), change the model, offload "
                "it again", lost)
        self._check_adapters()
        self._watch_model()

    @contextlib.contextmanager
    def acquired(self, *targets):
        """Holds the groups of targets (modules, parameters, buffers or qualified names)
        with their tensors in place, e.g. to update a mutable parameter in place
        between passes:

            with handle.acquired(model.blocks[3]), torch.no_grad():
                model.blocks[3].adapter.add_(1.0)
        """
        self._check_open()
        groups = []
        for target in targets:
            for g in self._groups_of(target):
                if g not in groups:
                    groups.append(g)
        taken = []
        try:
            for g in groups:
                self._user_acquire(g)
                taken.append(g)
            yield self
        finally:
            for g in reversed(taken):
                self._user_release(g)

    def close(self):
        """Restores the plain model: every parameter and buffer gets a CPU tensor read
        back from the host store (after a synchronize, so mutable ones are current),
        the hooks are removed and the runtime destroyed. Idempotent."""
        if self._closed:
            return
        stream = self._stream()
        for g in list(self._hook_held):
            self._release(g, stream)
        self._hook_held.clear()
        for g in list(self._user_held):
            self._release(g, stream)
        self._user_held.clear()
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._rt.synchronize()
        for e in self._entries:
            e.restore()
        self._finish()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self._closed else f"{len(self._groups)} groups"
        return f"<ferry.torch.OffloadHandle {type(self._model).__name__} {state}>"

    # --- internals ---------------------------------------------------------------

    def _check_adapters(self):
        """BudgetTooSmallError when the adapters and ferry's slab exceed the budget."""
        if self._budget is None:
            return
        adapters = self.adapter_bytes()
        slab = self._rt.stats()["slab_bytes"]
        if adapters and slab + adapters > self._budget:
            raise BudgetTooSmallError(
                f"ferry.torch: the LoRA adapters hold {format_bytes(adapters)} on the "
                f"device; with ferry's slab of {format_bytes(slab)} that is more than the "
                f"budget of {format_bytes(self._budget)}. Reserve room for them: "
                f"offload(..., adapter_budget=...) (now {format_bytes(self.adapter_budget)}); "
                "or delete adapters (delete_adapters, unload_lora_weights)")

    def _edit_layer(self, layer, method, held, args, kwargs):
        """PEFT's merge or unmerge of a tuner layer whose base weights ferry holds: run on
        host copies of those weights, read from the store one layer at a time, then
        written back into it with Tensor.update. Nothing is copied device-to-host but, on
        cuda, the layer's own adapter tensors (read to the host for the merge)."""
        if id(layer) in self._in_edit:  # a subclass calling its parent's merge
            return method(layer, *args, **kwargs)
        entries = [(p, self._group_of_tensor[id(p)]) for _, p in held]
        busy = [g.name for _, g in entries if self._held(g)]
        if busy:
            raise GroupBusyError(
                f"ferry.torch: a LoRA merge of {type(layer).__name__} while its group "
                f"{busy[0]!r} is held (inside forward or acquired()); merge outside it")
        by_param = {id(e.tensor): e for _, g in entries for e in g.entries}
        # An update ferry would refuse (a compressed image, a shared host store) is refused
        # before PEFT merges and records the adapter as merged: a zero-byte update checks
        # every condition and changes nothing.
        for p, _ in entries:
            by_param[id(p)].ferry.update_address(0, 0)
        saved = []
        moved = []
        before = list(getattr(layer, "merged_adapters", []))
        self._in_edit.add(id(layer))
        try:
            unchanged = {}  # tensors a LoRA merge may leave as they were (a bias)
            for (attr, _), (p, _) in zip(held, entries):
                saved.append((p, p.data))
                p.data = by_param[id(p)].read_back()
                if attr != "weight":
                    unchanged[id(p)] = p.data.clone()
            if self._device.type != "cpu":
                base = layer.get_base_layer()
                own = {id(p) for p in base.parameters()}
                for q in layer.parameters():
                    if id(q) not in own and q.device.type != "cpu":
                        moved.append((q, q.data))
                        q.data = q.data.cpu()
            result = method(layer, *args, **kwargs)
            if list(getattr(layer, "merged_adapters", [])) != before:
                for p, _ in entries:
                    e = by_param[id(p)]
                    new = p.data
                    if new.dtype != e.dtype or tuple(new.shape) != e.shape:
                        raise ModelChangedError(
                            f"ferry.torch: a LoRA merge made {e.name} {new.dtype} "
                            f"{tuple(new.shape)}, not {e.dtype} {e.shape}", [e.name])
                    new = new.detach().cpu().contiguous()
                    old = unchanged.get(id(p))
                    if old is not None and torch.equal(new.view(torch.uint8),
                                                       old.view(torch.uint8)):
                        continue
                    e.ferry.update_address(new.data_ptr(), e.nbytes)
            return result
        finally:
            self._in_edit.discard(id(layer))
            for q, data in moved:
                q.data = data
            for p, data in saved:
                p.data = data

    def _finish(self):
        for g in self._groups:
            g.views.clear()
        for key in self._owned:
            _owners.pop(key, None)
        self._closed = True
        try:
            self._rt.close()
        finally:
            if self._model.__dict__.get("_ferry_handle") is self:
                del self._model.__dict__["_ferry_handle"]

    def _check_open(self):
        if self._closed:
            raise ClosedError(
                "ferry.torch: this offload handle is closed (the model was restored to "
                "plain CPU tensors); offload the model again to stream it"
            )

    def _groups_of(self, target):
        if isinstance(target, str):
            hits = [g for g in self._groups for e in g.entries
                    if e.name == target or e.name.startswith(target + ".")]
            if not hits and target in self._by_name:
                hits = [self._by_name[target]]
            if not hits:
                raise InvalidArgumentError(f"ferry.torch: nothing offloaded is named {target!r}")
            return hits
        if isinstance(target, torch.nn.Module):
            tensors = list(target.parameters()) + [b for b in target.buffers() if b is not None]
        else:
            tensors = [target]
        hits = []
        for t in tensors:
            g = self._group_of_tensor.get(id(t))
            if g is not None and g not in hits:
                hits.append(g)
        if not hits:
            raise InvalidArgumentError(f"ferry.torch: {type(target).__name__} is not offloaded here")
        return hits

    def _stream(self):
        if self._device.type == "cuda":
            return torch.cuda.current_stream(self._device).cuda_stream
        return None  # sim: the calling thread; acquire returns when the bytes are in place

    def _views(self, g):
        """The group's tensors where they are now, built once per placement. A group
        moves as one image, so its first tensor's address names its slot; a split group's
        head stays while its tail moves, so there every tensor's address counts."""
        if g.split:
            ptrs = tuple(e.ferry.device_ptr() for e in g.entries)
            key = ptrs
        else:
            key = g.entries[0].ferry.device_ptr()
            ptrs = None
        views = g.views.get(key)
        if views is None:
            if ptrs is None:
                ptrs = [key] + [e.ferry.device_ptr() for e in g.entries[1:]]
            views = [self._make_view(e, ptr) for e, ptr in zip(g.entries, ptrs)]
            g.views[key] = views
        return views

    def _make_view(self, e, ptr):
        rt = self._rt
        if rt.backend == Backend.CUDA:
            view = _runtime.CudaView(ptr, (e.nbytes,), "uint8", rt.device)
        else:
            view = _runtime.HostView(ptr, (e.nbytes,), "uint8")
        raw = torch.utils.dlpack.from_dlpack(view.__dlpack__())
        return raw.view(e.dtype).view(e.shape)

    def _acquire(self, g, stream):
        g.ferry.acquire(stream)
        try:
            views = self._views(g)
        except BaseException:
            g.ferry.release(stream)
            raise
        for e, v in zip(g.entries, views):
            e.point_at(v)

    def _release(self, g, stream):
        for e in g.entries:
            e.point_at(e.placeholder)
        g.ferry.release(stream)

    def _held(self, g):
        return g in self._hook_held or g in self._user_held

    def _user_acquire(self, g):
        if not self._held(g):
            self._acquire(g, self._stream())
        self._user_held[g] = self._user_held.get(g, 0) + 1

    def _user_release(self, g):
        n = self._user_held.get(g, 0) - 1
        if n > 0:
            self._user_held[g] = n
            return
        self._user_held.pop(g, None)
        if g not in self._hook_held and not self._closed:
            self._release(g, self._stream())

    def _hook_acquire(self, g):
        if self._closed:
            raise ClosedError("ferry.torch: forward through a closed offload handle")
        if not self._held(g):
            self._check_unchanged(g)
            self._acquire(g, self._stream())
            self._hook_held.add(g)

    def _hook_release(self, g):
        if g in self._hook_held:
            self._hook_held.discard(g)
            if g not in self._user_held:
                self._release(g, self._stream())

    def _install_hooks(self, root_module):
        for g in self._groups:
            if g is self._root:
                continue

            def pre(module, args, g=g):
                self._hook_acquire(g)

            def post(module, args, output, g=g):
                self._hook_release(g)

            for m in g.modules:
                self._hooks.append(m.register_forward_pre_hook(pre))
            self._hooks.append(_post_hook(g.modules[-1], post))

        def root_pre(module, args, kwargs=None):
            if self._closed:
                raise ClosedError("ferry.torch: forward through a closed offload handle")
            if self._editing:
                raise InvalidArgumentError(
                    "ferry.torch: forward inside handle.editing(): leave the block first")
            # A pass that raised left its groups held: let them go first.
            for g in list(self._hook_held):
                self._hook_release(g)
            self._checked.clear()
            if self._root is not None:
                self._hook_acquire(self._root)
            else:
                self._check_unchanged(None)
            if self._device.type != "cuda":
                return None
            if _PRE_HOOK_KWARGS:
                return _to_device(args, self._device), _to_device(kwargs, self._device)
            return _to_device(args, self._device)

        def root_post(module, args, output):
            for g in list(self._hook_held):
                self._hook_release(g)
            self._accept_forward_changes()

        if _PRE_HOOK_KWARGS:
            pre_handle = root_module.register_forward_pre_hook(root_pre, with_kwargs=True)
        else:
            pre_handle = root_module.register_forward_pre_hook(root_pre)
        self._hooks.append(pre_handle)
        self._hooks.append(_post_hook(root_module, root_post))

    # --- tensors added or replaced after offload -----------------------------------

    def _watch_model(self, only=None):
        """One _Watch per group (the root's, under key self._root, which may be None,
        covers every module outside the streamed blocks); only: those of these groups."""
        ferry_buffers = {(id(m), attr) for e in self._entries if not e.param
                         for m, attr in e.locations}
        if only is None:
            held = {id(e.tensor) for e in self._entries if e.param}
            self._ferry_params = {(id(m), attr) for m in self._model.modules()
                                  for attr, p in m._parameters.items() if id(p) in held}
            self._watches = {}
        in_blocks = set()
        for g in self._groups:
            if g is self._root:
                continue
            modules = list({id(m): m for b in g.modules for m in b.modules()}.values())
            in_blocks.update(map(id, modules))
            if only is None or g in only:
                self._watches[g] = _Watch(modules, g.entries, ferry_buffers)
        if only is None or self._root in only:
            top = [m for m in self._model.modules() if id(m) not in in_blocks]
            root_entries = self._root.entries if self._root is not None else []
            self._watches[self._root] = _Watch(top, root_entries, ferry_buffers)

    def _accept_forward_changes(self):
        """What the forward itself changed in the groups it went through (a cache built
        lazily into a buffer, on the device it computes on) is the model's own: their
        watches take it as it is now. Changes made between forwards were refused by the
        check before the group was acquired; a group a forward did not reach (it raised
        first) keeps its watch, and a parameter added or replaced is refused at the next
        forward even when the forward made it."""
        changed = [g for g in self._checked
                   if not self._held(g) and not self._watches[g].unchanged()]
        self._checked.clear()
        if changed and not self._changes(buffers=False):
            self._watch_model(only=changed)

    def _check_unchanged(self, g):
        if self._watches[g].unchanged():
            self._checked.add(g)
            return
        changes = self._changes()
        if not changes:
            # Moved or removed only, or LoRA adapters added: nothing ferry does not hold
            # but the adapters, which live on the device within adapter_budget.
            self._check_adapters()
            _route_peft_merges()
            self._watch_model()
            self._checked.add(g)
            return
        shown = ", ".join(f"{name} ({kind})" for name, kind in changes[:12])
        if len(changes) > 12:
            shown += f", and {len(changes) - 12} more"
        raise ModelChangedError(
            f"ferry.torch: {type(self._model).__name__} changed after offload(): "
            f"{len(changes)} tensor(s) ferry does not hold, which would stay on the CPU "
            f"beside its device tensors: {shown}. Call close() on the offload handle (it "
            "gives the tensors ferry holds back their CPU data), change the model as you "
            "need, then offload it again",
            [name for name, _ in changes],
        )

    def _changes(self, buffers=True):
        """[(qualified name, "new" | "replaced" | "data replaced")] of the model's
        non-empty parameters (and buffers) that ferry does not hold."""
        group_of = self._group_of_tensor
        buffer_at = {(id(m), attr): e for e in self._entries if not e.param
                     for m, attr in e.locations}
        out = []
        for mname, m in self._model.named_modules():
            for attr, p in m._parameters.items():
                if p is None:
                    continue
                g = group_of.get(id(p))
                if g is None and _is_adapter(_qualify(mname, attr)):
                    continue  # a LoRA adapter's: _check_adapters counts it
                if g is None:
                    if p.numel():
                        kind = "replaced" if (id(m), attr) in self._ferry_params else "new"
                        out.append((_qualify(mname, attr), kind))
                elif p.numel() and not self._held(g):
                    out.append((_qualify(mname, attr), "data replaced"))
            for attr, b in (m._buffers.items() if buffers else ()):
                if b is None or not b.numel():
                    continue
                e = buffer_at.get((id(m), attr))
                if e is None:
                    out.append((_qualify(mname, attr), "new"))
                elif b is not e.placeholder and not self._held(group_of[id(e.tensor)]):
                    out.append((_qualify(mname, attr), "replaced"))
        return out


def _post_hook(module, hook):
    if _POST_HOOK_ALWAYS:
        return module.register_forward_hook(hook, always_call=True)
    return module.register_forward_hook(hook)


def _to_device(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


_PIPELINE_INDEX = "model_index.json"


def resolve_weights(path, model):
    """The weights path offload(weights=path) opens for model: path itself, unless it is a
    diffusers pipeline folder (it holds model_index.json); then the subfolder whose
    config.json names the model's class: diffusers' ``_class_name``, or transformers'
    ``architectures``. InvalidArgumentError, listing the subfolders, when none or more
    than one does."""
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, _PIPELINE_INDEX)):
        return path
    want = type(model).__name__
    candidates = []  # (subfolder, [class names])
    for sub in sorted(os.listdir(path)):
        config = os.path.join(path, sub, "config.json")
        if not os.path.isfile(config):
            continue
        try:
            with open(config, encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(cfg, dict):
            continue
        names = []
        if isinstance(cfg.get("_class_name"), str):
            names.append(cfg["_class_name"])
        if isinstance(cfg.get("architectures"), list):
            names += [a for a in cfg["architectures"] if isinstance(a, str)]
        candidates.append((sub, names))
    hits = [sub for sub, names in candidates if want in names]
    if len(hits) == 1:
        return os.path.join(path, hits[0])
    listed = ", ".join(f"{sub} ({'/'.join(names) or '?'})" for sub, names in candidates) or "none"
    why = "no subfolder" if not hits else f"{len(hits)} subfolders ({', '.join(hits)})"
    raise InvalidArgumentError(
        f"ferry.torch.offload: weights={path!r} is a diffusers pipeline folder, and {why} "
        f"holds a {want} (by config.json's _class_name or architectures); give the "
        f"component's folder instead; subfolders: {listed}")


def _file_plan(model, all_entries, weights, prefix):
    """weights=: sets each entry's key (its name in the files, or None when the module's
    own bytes are copied in) and returns the problems only this side can see, each a
    line for the one mismatch error.

    The files hold the model's state dict: an entry is read from them when one of its
    names is a state_dict key (parameters and persistent buffers; a tensor tied under
    several names is read from whichever of them the files hold, its own name first).
    Other entries (non-persistent buffers: rotary tables and the like) are copied in from
    the module, which needs their data: one on meta is a problem."""
    names = {}  # id(tensor) -> its state_dict keys
    for key, value in model.state_dict(keep_vars=True).items():
        if isinstance(value, torch.Tensor):
            names.setdefault(id(value), []).append(key)
    ties = getattr(model, "_tied_weights_keys", None)  # transformers: {target: source}
    ties = ties if isinstance(ties, dict) else {}
    problems = []
    for e in all_entries:
        keys = names.get(id(e.tensor))
        if not keys:
            if e.on_meta:
                problems.append(
                    f"{e.name}: on meta and not in the state dict (a non-persistent buffer), so "
                    "neither the files nor the module hold its data")
            continue
        in_files = [k for k in keys if prefix + k in weights]
        if e.name in in_files:
            e.key = e.name
        elif in_files:
            e.key = in_files[0]
        else:
            e.key = e.name if e.name in keys else keys[0]  # missing: the library says so
            source = next((ties[k] for k in keys if isinstance(ties.get(k), str)), None)
            if source is not None and prefix + source in weights:
                problems.append(
                    f"{e.key}: tied to {source} by {type(model).__name__}._tied_weights_keys, "
                    f"and only {source} is in the files: tie them first "
                    "(model.tie_weights(); accelerate's init_empty_weights loses the tie)")
    return problems


def _files_agree(all_entries, weights, prefix, allow_unused):
    """A quick look, without the library, at whether the files hold every keyed entry in
    its shape and a dtype it can be read as (and nothing more, without allow_unused)."""
    floats = (torch.float32, torch.bfloat16, torch.float16)
    file_dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    read = set()
    for e in all_entries:
        if e.key is None:
            continue
        name = prefix + e.key
        if name not in weights:
            return False
        t = weights[name]
        file_dtype = file_dtypes.get(t.dtype)
        if tuple(t.shape) != e.shape or t.nbytes == 0:
            return False
        if file_dtype != e.dtype and not (file_dtype in floats and e.dtype in floats):
            if file_dtype is not None or _dtype_of(e.tensor).name != t.dtype:
                return False
        read.add(name)
    return allow_unused or len(read) == len(weights)


def _mismatch(model, weights, problems, library_message=None):
    """The one error: the library's list of problems (when it found any) and this side's."""
    lines = "".join(f"\n  {p}" for p in problems)
    name = type(model).__name__
    if library_message:
        message = f"{library_message}\nand {len(problems)} problem(s) in {name} itself:{lines}"
    else:
        message = (f"ferry.torch.offload: {len(problems)} problem(s) matching {name} to the "
                   f"weights in '{weights.path}':{lines}")
    return WeightsMismatchError(message, Status.WEIGHTS_MISMATCH)


def offload(model, budget, blocks_per_group=1, mutable=None, blocks=None, progress=None,
            weights=None, weights_prefix="", allow_unused=False, load_options=None,
            adapter_budget=0, share=None, share_timeout=None, **config):
    """Streams model's parameters and buffers through a ferry runtime. Returns an
    OffloadHandle; the model is then used as before.

    budget: VRAM bytes ferry may hold: an int, "8GiB", "512MB", or "40%" (of the bytes
    offloaded, each tensor padded to ferry's 256-byte alignment: "100%" holds them all). blocks_per_group: consecutive blocks of each split ModuleList or
    Sequential per group. mutable: qualified names (a module's name covers its tensors)
    or a predicate ``f(name, tensor) -> bool`` of the tensors that may change in place
    on the device; their updates persist. All others are immutable: never written back.
    blocks: the qualified name of the ModuleList / Sequential whose children are the
    blocks ("encoder.block"), or a list of names; None (the default) finds the
    containers of repeated blocks at any depth; [] splits nothing (one group).
    progress: bars for pinning, copying and loading on stderr; None: tqdm bars when tqdm
    is installed and stderr is a terminal, True: always (plain lines without tqdm),
    False: never. config: ferry.Runtime keywords (backend="sim", device=0,
    slots_per_class=2, synchronous=False, name=..., sim_chaos=1, pinned_cap_bytes=...,
    pageable_fallback=True, compress=True, ...).

    weights: safetensors files to read the model's tensors from, straight into ferry's
    host store: a .safetensors file, a *.safetensors.index.json, a transformers or
    diffusers model folder (model.safetensors[.index.json],
    diffusion_pytorch_model.safetensors[.index.json]), a diffusers pipeline folder
    (model_index.json: the subfolder whose config.json names type(model).__name__), or
    an open ferry.Weights. Every tensor whose name is a state_dict key (parameters and
    persistent buffers) is read from the file tensor of that name (weights_prefix
    prepended); a tied tensor is read once, from whichever of its names the files hold.
    Other tensors (non-persistent buffers) are copied from the module. The model may be
    built on the meta device (``with torch.device("meta")``, or accelerate's
    ``init_empty_weights()``): nothing of it is ever held in torch memory; a real model's
    tensors are replaced by the files' bytes (they are freed once offload() succeeds, so
    a real model briefly has two copies: build it on meta for one). The module's dtype
    wins: float tensors of another float dtype in the files are converted while read.
    Any disagreement (a tensor missing from the files, of another shape or dtype, a file
    tensor nothing reads unless allow_unused=True, a non-persistent buffer on meta) is
    one WeightsMismatchError listing all of it, raised before any tensor byte is read.
    load_options: more keywords of ferry.Runtime.load (threads=, direct=, disk_tier=,
    convert_dtype=). With pinned_cap_bytes below the model and pageable_fallback=True,
    the tensors past the cap stay in the files (disk tier) and are read at each onload.

    adapter_budget: VRAM kept out of ferry's slab for LoRA adapter tensors (bytes, "1GiB"
    or a share of the model, "2%"; default 0): ferry plans with budget - adapter_budget,
    and adapters that would take the device past the budget are a BudgetTooSmallError at
    the next forward or at the end of handle.editing().

        with accelerate.init_empty_weights():
            transformer = FluxTransformer2DModel.from_config(
                FluxTransformer2DModel.load_config("FLUX.1-dev", subfolder="transformer"))
        transformer = transformer.to(torch.bfloat16)
        handle = ferry.torch.offload(transformer, "8GiB", weights="FLUX.1-dev")

    share: the name of a host store shared by every process offloading the same model
    on this host (torchrun ranks, data-parallel replicas): its bytes are held once in
    host RAM, in /dev/shm/ferry-host.<share>. The first process to get there loads it
    (from the module or from weights=); the others wait for it (share_timeout seconds at
    most) and read nothing: their model may be on the meta device, without weights=. A
    process whose model is on meta without weights= never loads: should it come first,
    it waits for a process that can. Every process must offload the same model with the
    same budget and blocks (a HostShareLayoutError names the first difference). Under
    torchrun each process uses the GPU of its LOCAL_RANK unless device= is given.

    Errors leave the model as it was (a meta model stays on meta): FerryError subclasses
    (BudgetTooSmallError, AlreadyOffloadedError, WeightsMismatchError, FileFormatError,
    ...) with the library's message."""
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError("ferry.torch.offload: model must be a torch.nn.Module")
    if isinstance(blocks_per_group, bool) or not isinstance(blocks_per_group, int) \
            or blocks_per_group < 1:
        raise InvalidArgumentError(
            f"ferry.torch.offload: blocks_per_group must be an int >= 1, not {blocks_per_group!r}"
        )
    if progress not in (None, True, False):
        raise InvalidArgumentError(
            f"ferry.torch.offload: progress must be None, True or False, not {progress!r}"
        )
    load_options = dict(load_options or {})
    unknown = set(load_options) - {"threads", "direct", "disk_tier", "convert_dtype"}
    if unknown:
        raise InvalidArgumentError(
            "ferry.torch.offload: load_options takes threads, direct, disk_tier and "
            f"convert_dtype, not {', '.join(sorted(unknown))}")
    if load_options and weights is None:
        raise InvalidArgumentError("ferry.torch.offload: load_options needs weights=")
    owner = handle_of(model)
    if owner is not None:
        raise AlreadyOffloadedError(
            f"ferry.torch.offload: {type(model).__name__} (or a tensor of it) is already "
            f"offloaded by {owner!r}; call its close() first"
        )

    # --- which tensor goes to which group -----------------------------------------
    entries = {}  # id(tensor) -> _Entry
    owners = {}  # id(tensor) -> set of block-group indexes
    groups = []
    for prefix, children in _container_blocks(model, blocks):
        for start in range(0, len(children), blocks_per_group):
            chunk = children[start:start + blocks_per_group]
            first, last = chunk[0][0], chunk[-1][0]
            label = first if first == last else f"{first}-{last}"
            name = _qualify(prefix, label)
            g = _GroupPlan(name, [m for _, m in chunk])
            for block_name, block in chunk:
                for tname, t, is_param in _own_tensors(block, _qualify(prefix, block_name)):
                    if t.numel() == 0:
                        continue
                    if id(t) not in entries:
                        entries[id(t)] = _Entry(tname, t, is_param)
                    owners.setdefault(id(t), set()).add(len(groups))
            groups.append(g)
    root = _GroupPlan(ROOT_GROUP, [])
    for tname, t, is_param in _own_tensors(model, ""):
        if t.numel() == 0:
            continue
        if id(t) not in entries:
            entries[id(t)] = _Entry(tname, t, is_param)
            owners[id(t)] = set()
    for key, e in entries.items():
        where = owners[key]
        target = groups[next(iter(where))] if len(where) == 1 else root
        target.entries.append(e)
    for e in entries.values():
        if e.tensor.is_sparse:
            raise InvalidArgumentError(f"ferry.torch.offload: {e.name} is sparse")
        if e.on_meta and weights is None and share is None:
            raise InvalidArgumentError(
                f"ferry.torch.offload: {e.name} is on meta; give weights= (safetensors "
                "files) to read a model built on meta from them")
    for module in model.modules():
        for attr, b in module._buffers.items():
            if b is not None and id(b) in entries:
                entries[id(b)].locations.append((module, attr))
        for attr, p in module._parameters.items():
            if p is not None and id(p) in entries:
                entries[id(p)].slots.append((module, attr))
    groups = [g for g in groups if g.entries]
    if root.entries:
        groups.insert(0, root)
    all_entries = [e for g in groups for e in g.entries]
    if not all_entries:
        raise InvalidArgumentError("ferry.torch.offload: the model has no tensors to offload")
    chosen = _resolve_mutable(mutable, all_entries)
    for e in all_entries:
        e.mutable = e.name in chosen
    model_bytes = sum(e.nbytes for e in all_entries)
    # A share is of the bytes as ferry lays them out, each tensor at a 256-byte aligned
    # offset of its group's image: "100%" holds the whole model.
    laid_out = sum(_laid_out(e.nbytes) for e in all_entries)
    vram_budget = parse_budget(budget, laid_out)
    reserved = parse_budget(adapter_budget, laid_out) if adapter_budget else 0
    if reserved < 0 or reserved >= vram_budget:
        raise InvalidArgumentError(
            f"ferry.torch.offload: adapter_budget ({format_bytes(reserved)}) must leave "
            f"part of the budget ({format_bytes(vram_budget)}) to ferry")

    # --- the files: opened, matched here as far as only this side can -------------
    files = None
    own_files = False
    if weights is not None:
        if isinstance(weights, Weights):
            files = weights
        else:
            files = Weights(resolve_weights(weights, model))
            own_files = True
    try:
        if files is not None:
            problems = _file_plan(model, all_entries, files, weights_prefix)
            if problems and _files_agree(all_entries, files, weights_prefix, allow_unused):
                raise _mismatch(model, files, problems)
        else:
            problems = []
        if share is not None:
            config["host_share"] = share
            if share_timeout is not None:
                config["host_share_timeout"] = share_timeout
            if "device" not in config and os.environ.get("LOCAL_RANK", "").isdigit():
                config["device"] = int(os.environ["LOCAL_RANK"])  # torchrun: a GPU per rank
        handle = _offload(model, groups, root, all_entries, model_bytes, vram_budget,
                          progress, config, files, problems,
                          dict(load_options, name_prefix=weights_prefix,
                               allow_unused=allow_unused), reserved)
    finally:
        if own_files:
            files.close()  # a runtime reading from them at onload keeps them open itself
    return handle


def _offload(model, groups, root, all_entries, model_bytes, vram_budget, progress, config,
             files, problems, load_kwargs, adapter_budget=0):
    config.setdefault("name", type(model).__name__)
    # A shared host store: a process with nothing to load (a model on meta without
    # weights=) that comes first leaves, and tries again until another one has loaded.
    can_load = files is not None or not any(e.on_meta for e in all_entries)
    deadline = None
    if config.get("host_share") is not None:
        deadline = time.monotonic() + float(config.get("host_share_timeout") or 1800)
    while True:
        planning = time.perf_counter()
        rt = _plan_runtime(groups, root, vram_budget - adapter_budget, progress, config)
        plan_s = time.perf_counter() - planning
        role = rt.host_share_role if deadline is not None else "none"
        if role != "loader" or can_load:
            break
        rt.close()
        if time.monotonic() > deadline:
            raise HostShareError(
                f"ferry.torch.offload: no process loaded the shared host store "
                f"'{config['host_share']}' within {config.get('host_share_timeout') or 1800} s, "
                "and this one cannot: its model is on the meta device and no weights= were "
                "given. Start one process with the model's weights (or weights=)")
        time.sleep(0.05)
    if rt.backend == Backend.CUDA:
        device = torch.device("cuda", rt.device)
    else:
        device = torch.device("cpu")

    loading = time.perf_counter()
    if role == "attached" and files is None:
        _attach(groups, rt, device)  # the bytes are another process's: nothing to copy
        report = None
    elif files is None:
        _load_from_module(groups, rt, model_bytes, progress, device)
        report = None
    else:
        # Attached, the load matches the files and reads nothing (bytes_read 0).
        report = _load_from_files(model, groups, rt, all_entries, progress, device, files,
                                  problems, load_kwargs)
    _heap.trim()

    handle = OffloadHandle(model, rt, groups, all_entries, device, vram_budget, adapter_budget)
    handle.load_report = report
    handle.host_share_role = role
    # plan_s: ferry_plan (with share=: joining, and for an attached one its wait and
    # mapping); load_s: copying or reading the bytes, and sealing.
    handle.timings = {"plan_s": plan_s, "load_s": time.perf_counter() - loading}
    for e in all_entries:
        _owners[id(e.tensor)] = handle
        handle._owned.append(id(e.tensor))
    model.__dict__["_ferry_handle"] = handle
    handle._install_hooks(model)
    handle._watch_model()
    # PEFT's layer classes imported by now (diffusers imports them with its models): a
    # merge right after adapters are injected, before any forward, must reach ferry too.
    _route_peft_merges()
    return handle


def _plan_runtime(groups, root, vram_budget, progress, config):
    """A runtime with the groups defined and planned (nothing of the model is touched
    before this works); closed on failure."""
    rt = _runtime.Runtime(vram_budget, **config)
    try:
        for g in groups:
            g.ferry = rt.define_group(g.name)
            if g is root:
                g.ferry.prefer_resident()  # held for the whole forward: a slot otherwise
            for e in g.entries:
                dt = _dtype_of(e.tensor)
                e.ferry = g.ferry.define_tensor(
                    e.key or e.name, e.nbytes, dtype=dt,
                    shape=e.shape if dt != DType.UNKNOWN else None, mutable=e.mutable,
                )
        pinning = _progress.PinBar(progress, "ferry: pinning")
        waiting = _WaitBar(progress)
        if progress is not False:
            rt.set_pin_progress(pinning)
            if config.get("host_share") is not None:
                rt.set_host_share_progress(waiting)
        try:
            rt.plan()  # a shared host store: waits here while another process loads it
        finally:
            pinning.close()
            waiting.close()
        for g in groups:
            info = g.ferry.info()
            g.split = not info["resident"] and info["resident_bytes"] > 0
    except BaseException:
        rt.close()
        raise
    return rt


class _WaitBar:
    """The bar of plan()'s wait for another process to load the shared host store."""

    def __init__(self, progress):
        self.progress = progress
        self.bar = None
        self.done = 0

    def __call__(self, loaded, total):
        if self.bar is None:
            self.bar = _progress.bar(self.progress, total,
                                     "ferry: waiting for the shared host store")
        if self.bar is not None and loaded > self.done:
            self.bar.update(loaded - self.done)
            self.done = loaded

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def _released_or_put_back(rt, released):
    """Around releasing the module's tensors into `released` and sealing: on failure each
    released tensor is put back (a meta model's stays on meta) and the runtime closed;
    on success their original storage is dropped (a real model's bytes are freed)."""
    try:
        yield
    except BaseException:
        for e in released:
            e.put_back()
            e.original = None
        rt.close()
        raise
    for e in released:
        e.original = None


def _attach(groups, rt, device):
    """A shared host store another process loaded: releases the module's tensors (a
    meta model's included) and seals. On failure the model is as it was and the runtime
    is closed."""
    released = []
    with _released_or_put_back(rt, released):
        _release_entries(groups, device, released)
        rt.seal()


def _release_entries(groups, device, released):
    """Points every entry at an empty placeholder of its dtype on `device`, remembering
    its tensor (and a real one's bytes) so that put_back() can undo it; appends each to
    `released` as it goes, so that a failure part-way undoes what was done."""
    placeholders = {}
    for g in groups:
        for e in g.entries:
            if e.dtype not in placeholders:
                placeholders[e.dtype] = torch.empty(0, dtype=e.dtype, device=device)
            e.original = (e.tensor, None if e.on_meta else e.tensor.data)
            released.append(e)
            e.release_to(placeholders[e.dtype])


def _load_from_module(groups, rt, model_bytes, progress, device):
    """Copies group by group into the host store, freeing the module's copy as it goes;
    seals. On failure the model gets its bytes back and the runtime is closed."""
    released = []
    placeholders = {}
    untrimmed = 0  # bytes released since the last trim
    copying = None
    try:
        copying = _progress.bar(progress, model_bytes, "ferry: copying")
        for g in groups:
            for e in g.entries:
                src = e.tensor.detach()
                if src.device.type != "cpu":
                    src = src.cpu()
                src = src.contiguous()
                e.ferry.copy_in_address(src.data_ptr(), e.nbytes)
                del src
                if copying is not None:
                    copying.update(e.nbytes)
            for e in g.entries:
                if e.dtype not in placeholders:
                    placeholders[e.dtype] = torch.empty(0, dtype=e.dtype, device=device)
                released.append(e)  # its bytes are in the store: restore() can undo
                e.release_to(placeholders[e.dtype])
                untrimmed += e.nbytes
            if untrimmed >= _TRIM_EVERY:
                _heap.trim()
                untrimmed = 0
        rt.seal()
    except BaseException:
        # Put back what was already released, from the host store (still writable and
        # readable in PLANNED), then drop the runtime: the model is as it was.
        for e in released:
            e.restore()
        rt.close()
        raise
    finally:
        if copying is not None:
            copying.close()


def _load_from_files(model, groups, rt, all_entries, progress, device, files, problems,
                     load_kwargs):
    """Reads the keyed entries from the files and copies the others from the module,
    then releases the module's tensors and seals. Returns the LoadReport. On failure the
    model gets its own tensors back (a meta model stays on meta) and the runtime is
    closed."""
    released = []
    with _released_or_put_back(rt, released):
        for e in all_entries:
            if e.key is None and not e.on_meta:  # not in the state dict: the module's bytes
                src = e.tensor.detach()
                if src.device.type != "cpu":
                    src = src.cpu()
                src = src.contiguous()
                e.ferry.copy_in_address(src.data_ptr(), e.nbytes)
                del src
        keyed = [e.ferry for e in all_entries if e.key is not None]
        try:
            report = rt.load(files, tensors=keyed, progress=progress, **load_kwargs)
        except WeightsMismatchError as exc:
            if problems:
                raise _mismatch(model, files, problems, exc.message) from None
            raise
        if problems:
            raise _mismatch(model, files, problems)
        _release_entries(groups, device, released)
        rt.seal()
    return report
