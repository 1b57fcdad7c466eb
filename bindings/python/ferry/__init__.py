"""ferry: stream a model's weights from one pinned host copy into a fixed VRAM budget.

Pure ctypes over libferry.so. The library is found through FERRY_LIBRARY, then next to
this package, then the build tree of the repository it sits in (build/libferry.so), then
the system's search path. ``ferry.Weights`` opens safetensors files for
``Runtime.define_from`` and ``Runtime.load``. ``ferry.torch`` (imported on first use)
offloads an ``nn.Module`` block by block, from its own tensors or from weights files.
"""

from ._lib import LibraryNotFoundError, library_path, search_locations
from .errors import *  # noqa: F401,F403 - the exception classes and Status
from .errors import __all__ as _errors_all
from .runtime import (
    STATS_KEYS,
    Backend,
    CudaView,
    DType,
    Group,
    HostView,
    Phase,
    Runtime,
    Tensor,
    version,
    version_number,
)
from .units import format_bytes, parse_bytes
from .weights import LoadReport, Weights, WeightsTensor

__version__ = "0.1.0"  # of these bindings; version() is the loaded library's

__all__ = [
    "LibraryNotFoundError",
    "library_path",
    "search_locations",
    "STATS_KEYS",
    "Backend",
    "CudaView",
    "DType",
    "Group",
    "HostView",
    "Phase",
    "Runtime",
    "Tensor",
    "Weights",
    "WeightsTensor",
    "LoadReport",
    "version",
    "version_number",
    "format_bytes",
    "parse_bytes",
] + list(_errors_all)


def __getattr__(name):
    # `import ferry; ferry.torch.offload(...)` works without importing torch up front.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'ferry' has no attribute {name!r}")
