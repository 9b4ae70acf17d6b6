from .config import TrainConfig
from .losses import LossWeights, discriminator_loss, generator_loss
from .trainer import Trainer, TrainResult, calibrate, split_validation

__all__ = ["LossWeights", "TrainConfig", "TrainResult", "Trainer", "calibrate", "discriminator_loss",
           "generator_loss", "split_validation"]
