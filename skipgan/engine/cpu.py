"""What this CPU offers the engine, with the instruction-set restrictions a user (or a test) put on the libraries.

The hardware may have bf16 dot products (AVX512-BF16, AMX) that a library is told not to use: oneDNN obeys
ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA). Under such a restriction bf16 products fail (below AVX-512) or run
emulated, slower than fp32 (AVX512_CORE measured 2x slower than fp32 on a Zen 5), so the engine refuses bf16 as it
does on a CPU without the instructions.
"""

from __future__ import annotations

import os

import torch

# oneDNN's ISA names in increasing order (its documented values of ONEDNN_MAX_CPU_ISA); from AVX512_CORE_BF16 on
# the bf16 dot products are allowed
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
               "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")
_BF16_FROM = ONEDNN_ISAS.index("AVX512_CORE_BF16")
_INT8_FROM = ONEDNN_ISAS.index("AVX512_CORE_VNNI")  # oneDNN's u8s8 products with AVX512-VNNI dot products


def onednn_max_isa() -> str | None:
    """The restriction put on oneDNN by the environment, upper-cased (None: none)."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value else None


def _restriction(has_instructions: bool, missing: str, first_isa: int, what: str) -> str | None:
    """Why a precision's products are not fast here (the CPU lacks its instructions, or oneDNN is restricted to a
    level below `first_isa`, ONEDNN_ISAS' index of the first level that has them), or None where they are."""
    if not has_instructions:
        return f"this CPU has neither {missing}"
    isa = onednn_max_isa()
    if isa in ONEDNN_ISAS and ONEDNN_ISAS.index(isa) < first_isa:
        return f"oneDNN is restricted to {isa} by ONEDNN_MAX_CPU_ISA, below its {what} instructions"
    return None


def bf16_restriction() -> str | None:
    """Why bf16 products are not fast here, or None where they are: the CPU lacks AVX512-BF16 and AMX, or oneDNN
    is restricted below them."""
    return _restriction(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported(),
                        "AVX512-BF16 nor AMX", _BF16_FROM, "bf16")


def bf16_fast() -> bool:
    return bf16_restriction() is None


def int8_restriction() -> str | None:
    """Why int8 products are not fast here, or None where they are: the CPU lacks AVX512-VNNI and AMX (without
    int8 dot-product instructions oneDNN's u8s8 products run at fp32 speed or worse), or oneDNN is restricted below
    them."""
    return _restriction(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported(),
                        "AVX512-VNNI nor AMX (no int8 dot-product instructions)", _INT8_FROM, "int8 dot-product")
