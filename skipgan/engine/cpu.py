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


def onednn_max_isa() -> str | None:
    """The restriction put on oneDNN by the environment, upper-cased (None: none)."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value else None


def bf16_restriction() -> str | None:
    """Why bf16 products are not fast here, or None where they are: the CPU lacks AVX512-BF16 and AMX, or oneDNN
    is restricted below them."""
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "this CPU has neither AVX512-BF16 nor AMX"
    isa = onednn_max_isa()
    if isa in ONEDNN_ISAS and ONEDNN_ISAS.index(isa) < _BF16_FROM:
        return f"oneDNN is restricted to {isa} by ONEDNN_MAX_CPU_ISA, below its bf16 instructions"
    return None


def bf16_fast() -> bool:
    return bf16_restriction() is None
