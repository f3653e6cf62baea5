"""Facts about and settings of this host: the glibc heap, other processes, the torch device.

The glibc heap settings keep an extraction process's memory flat as videos grow longer. Why: decoding and face detection allocate and free a few hundred KB per frame. When no free heap chunk fits,
glibc serves a request above its mmap threshold (128 KiB at start) with its own mmap, returned to the system on
free, but it raises that threshold dynamically (up to 32 MiB) each time such a block is freed; from then on the
per-frame buffers grow the heap instead, which fragments and is not returned, so resident memory climbs with the
number of frames. Measured with
`benchmarks/memory_vs_length.py --extractors face` (2-core CPU, 256x256 video at 8 fps): peak / RSS after the
face stage 1,334 / 1,199 MiB at 1 minute and 1,518 / 1,303 MiB at 2 minutes by default (+184 MiB peak for 2x
length), 1,088 / 758 and 1,106 / 754 MiB with the threshold fixed at 128 KiB (+18 MiB). Fixing the threshold with
`mallopt(M_MMAP_THRESHOLD)` also switches the dynamic adjustment off; `malloc_trim(0)` hands freed heap pages
back between stages.

Only glibc has these calls: on other C libraries (musl, macOS, Windows) every heap function here is a detected
no-op that returns False.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import socket
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

from pipeline.config import ConfigError

if TYPE_CHECKING:
    import torch

# mallopt parameter numbers from glibc's <malloc.h> (part of its ABI)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD = 32 * 2**20    # glibc's HEAP_MAX_SIZE/2 on 64-bit: mallopt refuses larger values


@lru_cache(maxsize=1)
def _libc() -> Any | None:
    """The process's glibc (with mallopt and malloc_trim), or None on any other C library."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        lib = ctypes.CDLL(None)
        mallopt, trim = lib.mallopt, lib.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lib


def heap_tunable() -> bool:
    """True when this process runs on glibc, so the settings below take effect."""
    return _libc() is not None


def set_mmap_threshold(nbytes: int) -> bool:
    """Serve allocations of at least `nbytes` with mmap (fixed threshold, dynamic raising off); True if applied."""
    if not 0 < nbytes <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap threshold must be in 1..{MAX_MMAP_THRESHOLD} bytes, got {nbytes}")
    lib = _libc()
    if lib is None:
        return False
    ok = lib.mallopt(M_MMAP_THRESHOLD, nbytes) == 1
    # the trim threshold is twice the mmap threshold by default: keep that relation for the fixed value
    return ok and lib.mallopt(M_TRIM_THRESHOLD, 2 * nbytes) == 1


def trim_heap() -> bool:
    """Return freed heap memory to the system (`malloc_trim(0)`); True if glibc released any."""
    lib = _libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this host (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


HOST_ID_VARIABLE = "SENTIFLOW_HOST_ID"   # overrides the host name (containers with shared or random names)


def host_name() -> str:
    """This host's name for claims and device slots: SENTIFLOW_HOST_ID, else the network host name."""
    return os.environ.get(HOST_ID_VARIABLE, "").strip() or socket.gethostname() or "host"


def boot_id() -> str:
    """This kernel boot's random id (Linux), or "" where the system has none: process ids restart at each boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """This process's PID namespace (Linux, e.g. "pid:[4026531836]"), or "": a process id names a process only in it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux), or None when it does not exist or is unknown.

    Together with the pid it names one process: a reused pid belongs to a process with a later start time.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:   # field 22; the command name (field 2) is in parentheses and may hold spaces
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def resolve_device(setting: str = "auto") -> "torch.device":
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is an error naming the setting."""
    import torch  # here, not at import: process and heap helpers serve callers that never load torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if setting != "cpu" and not setting.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {setting!r}")
    return torch.device(setting)


DEVICE_SETTING = re.compile(r"auto|cpu|cuda(:\d+)?")


def host_devices(setting: str = "auto", gpu_count: int | None = None) -> list[str]:
    """The devices of this host a device setting may use: 'cuda' or 'auto' -> every GPU ('cuda:0', 'cuda:1', ...),
    'cuda:N' -> that one, 'cpu' (or 'auto' without a GPU) -> 'cpu'. `gpu_count` defaults to torch's count."""
    if not DEVICE_SETTING.fullmatch(setting):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {setting!r}")
    if setting == "cpu":
        return ["cpu"]
    n = gpu_count
    if n is None:
        import torch  # here, not at import (see resolve_device)

        n = torch.cuda.device_count()
    if setting == "auto":
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    if n == 0:
        raise ConfigError(f"--device {setting} was asked for but this host ({host_name()}) has no CUDA device; "
                          "use --device cpu or auto")
    if setting == "cuda":
        return [f"cuda:{i}" for i in range(n)]
    index = int(setting.split(":")[1])
    if index >= n:
        raise ConfigError(f"--device {setting} was asked for but this host ({host_name()}) has {n} CUDA device(s)")
    return [setting]


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on (recorded with every run and checkpoint)."""
    out = {"python": platform.python_version()}
    for dist in ("sentiflow", "torch", "numpy", "safetensors", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
