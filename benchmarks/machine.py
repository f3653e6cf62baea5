"""Describe the machine a benchmark ran on (CPU, cores, memory, GPU, library versions)."""

from __future__ import annotations

import os
import platform
import resource

import torch


def machine_info() -> dict[str, str]:
    """Facts to print beside every benchmark figure."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info = {"cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{mem_gib:.0f} GiB",
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    return info


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
