"""skipgan: Skip-GANomaly image anomaly detection, trained and evaluated honestly, deployed fast."""

__version__ = "0.1.0"
