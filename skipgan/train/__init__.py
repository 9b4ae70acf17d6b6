from .config import TrainConfig
from .losses import LossWeights, discriminator_loss, generator_loss
from .calibrate import balanced_lambda, calibrate
from .trainer import Trainer, TrainResult, split_validation

__all__ = ["LossWeights", "balanced_lambda", "TrainConfig", "TrainResult", "Trainer", "calibrate", "discriminator_loss",
           "generator_loss", "split_validation"]
