"""skipgan: Skip-GANomaly image anomaly detection, trained and evaluated honestly, deployed fast."""

__version__ = "0.1.0"

# Registers torch.ops.skipgan.* (when the native library is built), so that `import skipgan` is all a Python
# program needs before torch.jit.load / aoti_load_package of an export; skipgan.ops.AVAILABLE says if it worked.
from . import ops  # noqa: E402,F401
