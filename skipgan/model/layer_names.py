"""The names of the network's convolutions, one definition for everything that addresses a layer: the engine's plan
and its cache, int8 calibration and int8 model files, the exports' layer forms.

    enc0 .. enc{n-1}   the generator's encoder, outermost first
    dec0 .. dec{n-1}   its decoder; dec0 is the last layer (it writes x̂), dec{n-1} the innermost
    pyr0 .. pyr{m-1}   the discriminator's pyramid
    feat               the discriminator's feature layer (f(x))

`named_layers` gives any per-layer items (modules, folded layers, sizes) these names, in this order; `by_part`
splits such a mapping back into the four parts.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")
ENCODER, DECODER, PYRAMID, FEATURE = "enc", "dec", "pyr", "feat"


def named_layers(encoder: Sequence[T], decoder: Sequence[T], pyramid: Sequence[T], feature: T) -> dict[str, T]:
    """{enc0.., dec0.., pyr0.., feat: item}, in that order."""
    out = {f"{ENCODER}{j}": item for j, item in enumerate(encoder)}
    out |= {f"{DECODER}{j}": item for j, item in enumerate(decoder)}
    out |= {f"{PYRAMID}{i}": item for i, item in enumerate(pyramid)}
    out[FEATURE] = feature
    return out


def by_part(named: dict[str, T]) -> tuple[list[T], list[T], list[T], T]:
    """(encoder, decoder, pyramid, feature) of a mapping named by named_layers, each part in index order."""
    def part(prefix: str) -> list[T]:
        n = sum(1 for k in named if k.startswith(prefix) and k[len(prefix):].isdigit())
        return [named[f"{prefix}{i}"] for i in range(n)]

    return part(ENCODER), part(DECODER), part(PYRAMID), named[FEATURE]


__all__ = ["DECODER", "ENCODER", "FEATURE", "PYRAMID", "by_part", "named_layers"]
