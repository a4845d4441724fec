"""Which number format sampling, training and distillation run in: bf16 only where it is native.

bf16 halves memory traffic and, on hardware with bf16 units, runs matmuls about twice as fast as
fp32. Without those units PyTorch emulates it, and it is far slower: on a 2-core AMD EPYC with AVX2
only, a 1024x1024 bf16 GEMM ran at 0.8 GFLOP/s against 71-91 GFLOP/s in fp32, and 20 s of speech
took 6.4 s to generate in bf16 against 1.1 s in fp32. So `auto` (the default everywhere) picks:

  - bf16 on a CUDA device that supports it (compute capability 8.0 and up: Ampere, Hopper, ...);
  - bf16 on a CPU with bf16 matrix instructions that torch uses: ARM's BF16 extension, or x86
    AVX512_BF16 or AMX-BF16 where torch runs its AVX-512 kernels;
  - fp32 everywhere else.

The CPU's bf16 instructions are read from `torch.cpu.get_capabilities()` (or /proc/cpuinfo where that
is missing): `torch.backends.cpu.get_cpu_capability()` only names the vector ISA torch dispatches to
("AVX2", "AVX512", ...), and "AVX512" alone does not mean bf16 (Skylake and Cascade Lake have AVX-512
without it). But on x86 the ISA decides too: torch's bf16 paths assume its AVX-512 kernels. Where it
runs AVX2 ones on a bf16 CPU (ATEN_CPU_CAPABILITY=avx2, the emulation of an AVX2-only CPU), bf16
generation fails on AMX ("pack_vnni2 is only supported when avx512 is supported"), and the emulation
should run what that CPU would: fp32. `--precision bf16|fp32` (or ASYNFUSION_PRECISION) forces one.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .settings import PRECISIONS, precision_request

# CPU feature names (torch.cpu.get_capabilities() keys, which match /proc/cpuinfo's flags) that mean
# bf16 matmuls run in hardware, with the name shown to the user
CPU_BF16_FEATURES = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512_BF16", "bf16": "ARM BF16"}
# the x86 ones, which torch reaches only from its AVX-512 kernels
AVX512_BF16_FEATURES = {"amx_bf16", "avx512_bf16"}


@dataclass(frozen=True)
class Precision:
    """The chosen format and, in a few words, why."""

    name: str    # "bf16" | "fp32"
    reason: str

    @property
    def dtype(self):
        import torch

        return torch.bfloat16 if self.name == "bf16" else torch.float32

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's share), else all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_features() -> Mapping[str, object]:
    """This CPU's instruction-set features: torch's cpuinfo view, else the flags in /proc/cpuinfo."""
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        return get_capabilities()
    try:  # older torch: the kernel's list (x86 "flags", ARM "Features")
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return dict.fromkeys(value.split(), True)
    except OSError:
        pass
    return {}


def choose_precision(requested: str | None = None, device=None) -> Precision:
    """The precision to run in on `device` (default: the CPU): `requested` unless it is "auto".

    None means $ASYNFUSION_PRECISION, else "auto". A forced choice says where it came from.
    """
    import torch

    from .errors import InputError

    source = "requested"
    if requested is None:
        requested = precision_request() or "auto"
        source = f"ASYNFUSION_PRECISION={requested}"
    if requested not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return Precision(requested, source)
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Precision("bf16", f"auto: {name} has native bf16")
        return Precision("fp32", f"auto: {name} has no native bf16")
    if device.type != "cpu":
        return Precision("fp32", f"auto: {device.type} device")
    features = cpu_features()
    native = [key for key in CPU_BF16_FEATURES if features.get(key)]
    isa = torch.backends.cpu.get_cpu_capability()
    if not native:
        return Precision("fp32", f"auto: CPU ({isa}) has no bf16 units, where bf16 is emulated and slower")
    if not isa.startswith("AVX512") and set(native) <= AVX512_BF16_FEATURES:
        setting = os.environ.get("ATEN_CPU_CAPABILITY")
        forced = f" (ATEN_CPU_CAPABILITY={setting})" if setting else ""
        return Precision("fp32", f"auto: torch runs {isa} kernels{forced}; its bf16 needs AVX512 ones "
                                 "(else emulated, or failing on AMX)")
    return Precision("bf16", f"auto: CPU has {' and '.join(CPU_BF16_FEATURES[key] for key in native)}")


def bf16_by_default() -> bool:
    """The training configs' default: bf16 autocast where `choose_precision()` picks it."""
    return choose_precision().name == "bf16"
