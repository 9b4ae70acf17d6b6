"""The image size rule, defined once: the sizes the Skip-GANomaly networks can take.

The generator is a UNet of log2(isize) levels down to a 1x1 map, and the discriminator's pyramid stops at 4x4,
so isize must be a power of two; 32 is the smallest the pyramid accepts, 512 the largest we build and test.
The model (`Architecture`, the generator, the discriminator), the data loaders (resizing images to a size the
model cannot take is the same mistake, caught before any image is decoded) and the CLI (`--isize`) all call
`check_isize`. It sits on the lowest floor (beside errors.py) so that `data/` need not import `model/`.
"""

from __future__ import annotations

import numbers

from .errors import InputError

MIN_ISIZE, MAX_ISIZE = 32, 512
ISIZES = tuple(2**k for k in range(MIN_ISIZE.bit_length() - 1, MAX_ISIZE.bit_length()))  # 32, 64, ..., 512


class ISizeError(InputError, ValueError):
    """A size the networks cannot take. A ValueError like the model's other settings checks ('isize=48: must
    be ...', which the CLI turns into '--isize 48: must be ...'), and an InputError: a user-fixable mistake,
    wherever it is caught."""


def check_isize(isize) -> int:
    """Return `isize` as a plain int if the networks can take it (a power of two from 32 to 512), else raise
    `ISizeError` naming the valid values. Integers of any type (numpy's too) are accepted; bools are not."""
    if (isinstance(isize, bool) or not isinstance(isize, numbers.Integral)
            or int(isize) not in ISIZES):
        shown = int(isize) if isinstance(isize, numbers.Integral) and not isinstance(isize, bool) else repr(isize)
        valid = ", ".join(str(s) for s in ISIZES[:-1]) + f" or {ISIZES[-1]}"
        raise ISizeError(f"isize={shown}: must be a power of two from {MIN_ISIZE} to {MAX_ISIZE} ({valid})")
    return int(isize)


def isize_levels(isize) -> int:
    """log2(isize): the number of UNet encoder levels (the innermost feature map is 1x1)."""
    return check_isize(isize).bit_length() - 1
