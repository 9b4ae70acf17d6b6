from ..isize import check_isize
from .corruption import Corruption
from .discriminator import Discriminator
from .skipganomaly import Architecture, Scores, SkipGANomaly, check_score_margin, init_weights, score_in_batches
from .unet import UNetGenerator

__all__ = [
    "Architecture", "Corruption", "Discriminator", "Scores", "SkipGANomaly", "UNetGenerator",
    "check_isize", "check_score_margin", "init_weights", "score_in_batches",
]
