"""Hardware detection: nvidia-smi output parsing and the CPU fallback."""

from __future__ import annotations

import json

import msgpack

from cocoon_p2p.inference.capability import (
    Capability,
    GpuInfo,
    detect_capability,
    parse_cpuinfo_model,
    parse_meminfo_total_mib,
    parse_nvidia_smi,
)


def test_parses_two_gpus() -> None:
    out = "NVIDIA H100 80GB HBM3, 81559, 550.54.15\nNVIDIA GeForce RTX 4090, 24564, 550.54.15\n"
    assert parse_nvidia_smi(out) == [
        GpuInfo("NVIDIA H100 80GB HBM3", 81559, "550.54.15"),
        GpuInfo("NVIDIA GeForce RTX 4090", 24564, "550.54.15"),
    ]


def test_tolerates_noise() -> None:
    out = "\n  Tesla T4 ,  15360 MiB , 535.104.05  \r\n\ngarbage line\nNVIDIA A10, [N/A], [N/A]\n, 1, 2\n"
    assert parse_nvidia_smi(out) == [
        GpuInfo("Tesla T4", 15360, "535.104.05"),
        GpuInfo("NVIDIA A10", 0, ""),
    ]


def test_name_with_comma_is_kept() -> None:
    assert parse_nvidia_smi("Weird, GPU, 1024, 1.0") == [GpuInfo("Weird, GPU", 1024, "1.0")]


def test_empty_output() -> None:
    assert parse_nvidia_smi("") == []
    assert parse_nvidia_smi("No devices were found\n") == []


def test_cpuinfo_and_meminfo() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\nflags\t\t: fpu\n"
    assert parse_cpuinfo_model(cpuinfo) == "Intel(R) Xeon(R) Gold 6338"
    assert parse_cpuinfo_model("processor : 0\nHardware : BCM2835\n") == "BCM2835"
    assert parse_cpuinfo_model("") == ""
    assert parse_meminfo_total_mib("MemTotal:       16318712 kB\nMemFree: 1 kB\n") == 15936
    assert parse_meminfo_total_mib("MemFree: 1 kB\n") == 0
    assert parse_meminfo_total_mib("MemTotal: lots\n") == 0


def test_detect_gives_a_serialisable_capability() -> None:
    cap = detect_capability()
    assert cap.kind in {"cpu", "gpu"}
    assert cap.cpu_cores >= 1
    assert (cap.kind == "gpu") == (cap.gpu_count > 0)
    as_dict = cap.to_dict()
    assert msgpack.unpackb(msgpack.packb(as_dict)) == json.loads(json.dumps(as_dict))


def test_to_dict_shape() -> None:
    cap = Capability(kind="gpu", gpus=[GpuInfo("A", 1000, "1"), GpuInfo("A", 1000, "1")], cpu_cores=8)
    d = cap.to_dict()
    assert d["gpu_count"] == 2 and d["total_vram_mib"] == 2000
    assert d["gpus"][0] == {"name": "A", "vram_mib": 1000, "driver_version": "1"}
