"""What hardware this worker offers: NVIDIA GPUs via nvidia-smi, else the CPU."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NVIDIA_SMI_QUERY = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class GpuInfo:
    name: str
    vram_mib: int
    driver_version: str


@dataclass(frozen=True)
class Capability:
    """Hardware summary for an offer. ``kind`` is "gpu" or "cpu"."""

    kind: str
    gpus: list[GpuInfo] = field(default_factory=list)
    cpu_model: str = ""
    cpu_cores: int = 0
    ram_mib: int = 0

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def total_vram_mib(self) -> int:
        return sum(g.vram_mib for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (str/int/list/dict), ready for msgpack."""
        out = asdict(self)
        out["gpu_count"] = self.gpu_count
        out["total_vram_mib"] = self.total_vram_mib
        return out


def parse_nvidia_smi(output: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits``.

    Tolerates blank lines, stray spaces, a "MiB" unit left in, and "[N/A]" values;
    lines that cannot be read are skipped rather than failing the worker.
    """
    gpus: list[GpuInfo] = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        # GPU names never contain commas in practice, but split from the right so
        # one that did would still parse.
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            continue
        name, mem, driver = parts
        mem = mem.removesuffix("MiB").strip()
        try:
            vram = int(float(mem))
        except ValueError:
            vram = 0
        if driver.upper() in {"[N/A]", "N/A"}:
            driver = ""
        gpus.append(GpuInfo(name=name, vram_mib=max(vram, 0), driver_version=driver))
    return gpus


def detect_gpus(timeout: float = 10.0) -> list[GpuInfo]:
    """NVIDIA GPUs visible to this process (empty when nvidia-smi is absent or fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run([exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return parse_nvidia_smi(proc.stdout)


def parse_cpuinfo_model(text: str) -> str:
    """CPU model name from /proc/cpuinfo text (x86 "model name", ARM "Hardware"/"Processor")."""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            k, sep, v = line.partition(":")
            if sep and k.strip() == key and v.strip():
                return v.strip()
    return ""


def parse_meminfo_total_mib(text: str) -> int:
    """MemTotal from /proc/meminfo text, in MiB (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            try:
                kib = int(fields[1])
            except (IndexError, ValueError):
                return 0
            unit = fields[2].lower() if len(fields) > 2 else "kb"
            return kib // 1024 if unit == "kb" else kib // (1024 * 1024)
    return 0


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def detect_capability() -> Capability:
    """GPUs when nvidia-smi reports any; the CPU description is filled in either way."""
    cpu_model = parse_cpuinfo_model(_read("/proc/cpuinfo")) or platform.processor() or platform.machine()
    ram = parse_meminfo_total_mib(_read("/proc/meminfo"))
    gpus = detect_gpus()
    return Capability(
        kind="gpu" if gpus else "cpu",
        gpus=gpus,
        cpu_model=cpu_model,
        cpu_cores=usable_cores(),
        ram_mib=ram,
    )


def gpu_offload_available() -> bool:
    """True when llama.cpp was built with a GPU backend and a GPU is there to use."""
    try:
        import llama_cpp
    except ImportError:
        return False
    if not llama_cpp.llama_supports_gpu_offload():
        return False
    # A Metal build always has its GPU; a CUDA build needs a visible NVIDIA device.
    return platform.system() == "Darwin" or bool(detect_gpus())
