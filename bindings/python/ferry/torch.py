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
own copy, so host memory stays near one copy of the model. During forward a pre-hook
acquires the group and points each parameter's ``.data`` (and each buffer) at a view of
the group's slot; a post-hook releases it and points them back at empty placeholders.

This is the only module of the package that imports torch.
"""

import collections
import contextlib
import ctypes
import inspect
import itertools
import operator

import torch
import torch.utils.dlpack

from . import _heap, _progress
from . import runtime as _runtime
from .errors import (
    AlreadyOffloadedError,
    ClosedError,
    FerryError,
    InvalidArgumentError,
    ModelChangedError,
)
from .runtime import Backend, DType
from .units import format_bytes, parse_bytes

__all__ = ["offload", "OffloadHandle", "handle_of", "parse_budget"]

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

    __slots__ = ("name", "tensor", "param", "locations", "dtype", "shape", "nbytes",
                 "mutable", "ferry", "placeholder")

    def __init__(self, name, tensor, param):
        self.name = name
        self.tensor = tensor  # the Parameter, or the buffer as first registered
        self.param = param
        self.locations = []  # buffers: (module, attribute) pairs
        self.dtype = tensor.dtype
        self.shape = tuple(tensor.shape)
        self.nbytes = tensor.numel() * tensor.element_size()
        self.mutable = False
        self.ferry = None  # ferry.Tensor
        self.placeholder = None

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
        self.tensor.data = value
        if not self.param:
            self.point_at(self.tensor)

    def read_back(self):
        """A CPU tensor with the bytes of ferry's host store (PLANNED or SEALED)."""
        out = torch.empty(self.shape, dtype=self.dtype)
        ctypes.memmove(out.data_ptr(), self.ferry.host_ptr(), self.nbytes)
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

    def __init__(self, model, rt, groups, entries, device):
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
        self._group_of_tensor = {}
        for g in groups:
            for e in g.entries:
                self._group_of_tensor[id(e.tensor)] = g

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

    def _finish(self):
        for g in self._groups:
            g.views.clear()
        for e in self._entries:
            _owners.pop(id(e.tensor), None)
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
            self._watch_model()  # moved or removed only: nothing ferry does not hold
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


def offload(model, budget, blocks_per_group=1, mutable=None, blocks=None, progress=None,
            **config):
    """Streams model's parameters and buffers through a ferry runtime. Returns an
    OffloadHandle; the model is then used as before.

    budget: VRAM bytes ferry may hold: an int, "8GiB", "512MB", or "40%" (of the bytes
    offloaded). blocks_per_group: consecutive blocks of each split ModuleList or
    Sequential per group. mutable: qualified names (a module's name covers its tensors)
    or a predicate ``f(name, tensor) -> bool`` of the tensors that may change in place
    on the device; their updates persist. All others are immutable: never written back.
    blocks: the qualified name of the ModuleList / Sequential whose children are the
    blocks ("encoder.block"), or a list of names; None (the default) finds the
    containers of repeated blocks at any depth; [] splits nothing (one group).
    progress: bars for pinning and copying on stderr; None: tqdm bars when tqdm is
    installed and stderr is a terminal, True: always (plain lines without tqdm),
    False: never. config: ferry.Runtime keywords (backend="sim", device=0,
    slots_per_class=2, synchronous=False, name=..., sim_chaos=1, ...).

    Errors leave the model as it was: FerryError subclasses (BudgetTooSmallError,
    AlreadyOffloadedError, ...) with the library's message."""
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
        if e.tensor.is_sparse or e.tensor.device.type == "meta":
            raise InvalidArgumentError(
                f"ferry.torch.offload: {e.name} is {'sparse' if e.tensor.is_sparse else 'on meta'}"
            )
    for module in model.modules():
        for attr, b in module._buffers.items():
            if b is not None and id(b) in entries:
                entries[id(b)].locations.append((module, attr))
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
    vram_budget = parse_budget(budget, model_bytes)

    # --- runtime: define, plan (nothing of the model is touched before this works) ---
    config.setdefault("name", type(model).__name__)
    rt = _runtime.Runtime(vram_budget, **config)
    try:
        if rt.backend == Backend.CUDA:
            device = torch.device("cuda", rt.device)
        else:
            device = torch.device("cpu")
        for g in groups:
            g.ferry = rt.define_group(g.name)
            if g is root:
                g.ferry.prefer_resident()  # held for the whole forward: a slot otherwise
            for e in g.entries:
                dt = _dtype_of(e.tensor)
                e.ferry = g.ferry.define_tensor(
                    e.name, e.nbytes, dtype=dt,
                    shape=e.shape if dt != DType.UNKNOWN else None, mutable=e.mutable,
                )
        pinning = _progress.PinBar(progress, "ferry: pinning")
        if progress is not False:
            rt.set_pin_progress(pinning)
        try:
            rt.plan()
        finally:
            pinning.close()
        for g in groups:
            info = g.ferry.info()
            g.split = not info["resident"] and info["resident_bytes"] > 0
    except BaseException:
        rt.close()
        raise

    # --- load group by group, freeing the module's copy as we go -------------------
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
                e.placeholder = placeholders[e.dtype]
                released.append(e)  # its bytes are in the store: restore() can undo
                e.point_at(e.placeholder)
                if not e.param:
                    # The entry keeps the buffer object for its identity, not its bytes.
                    e.tensor.data = e.placeholder
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
    _heap.trim()

    handle = OffloadHandle(model, rt, groups, all_entries, device)
    for e in all_entries:
        _owners[id(e.tensor)] = handle
    model.__dict__["_ferry_handle"] = handle
    handle._install_hooks(model)
    handle._watch_model()
    return handle
