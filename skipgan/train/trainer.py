"""The Skip-GANomaly training loop.

Honest protocol: every score is computed in eval() mode; model selection (optional) and threshold calibration
use only a validation split carved out of the normal training images, never test data.

Reproducibility: the weights are initialised from `seed`; every later random draw (shuffling, input corruption,
discriminator re-initialisation) comes from a generator seeded by (seed, epoch), so a resumed run continues
exactly as the uninterrupted one would, and CPU runs with the same seed are bit-identical.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from ..model import Architecture, SkipGANomaly, init_weights, score_in_batches
from ..scoring import Scores
from .calibrate import balanced_lambda, calibrate
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .config import TrainConfig
from .losses import discriminator_loss, generator_loss

D_REINIT_BELOW = 1e-5  # the official recipe: a collapsed discriminator is re-initialised


@dataclasses.dataclass
class TrainResult:
    model: SkipGANomaly
    history: list[dict[str, float]]
    val_scores: torch.Tensor
    calibration: dict[str, Any]
    selected_epoch: int


def split_validation(images: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): a seeded random `fraction` of the normal training images is held out for validation."""
    n_val = max(1, int(round(len(images) * fraction)))
    if len(images) - n_val < 2:
        raise ValueError(f"only {len(images)} training images: need at least {n_val + 2} for a validation split")
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[perm[n_val:]], images[perm[:n_val]]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class Trainer:
    def __init__(
        self,
        arch: Architecture,
        cfg: TrainConfig,
        device: str | torch.device = "cpu",
        out_dir: str | os.PathLike | None = None,
        run_info: dict[str, Any] | None = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.arch, self.cfg, self.device = arch, cfg, torch.device(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_info = run_info or {}
        self.progress, self.log = progress, log
        torch.manual_seed(cfg.seed)
        self.model = SkipGANomaly(arch, lam=cfg.lam, margin=cfg.score_margin, corruption=cfg.corruption)
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        G, D = self.model.generator, self.model.discriminator
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas)
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        use_scaler = cfg.amp == "fp16" and self.device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (val mean, epoch, weights)

    # ---------------------------------------------------------------- resume
    def resume(self) -> None:
        if self.out_dir is None:
            raise ValueError("resume needs out_dir")
        tensors, meta = load_checkpoint(self.out_dir)
        best = restore(self.model, self.opt_g, self.opt_d, tensors, meta)
        self.history = meta["history"]
        self.start_epoch = meta["epoch"]
        if best is not None:
            self.best = (meta["best_val_mean"], meta["best_epoch"], best)

    # ---------------------------------------------------------------- steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, x: torch.Tensor, x_in: torch.Tensor | None = None) -> dict[str, float]:
        """One G update then one D update on a batch of normal images x; the generator sees x_in (default x)."""
        G, D, w = self.model.generator, self.model.discriminator, self.cfg.loss_weights
        x_in = x if x_in is None else x_in
        # --- generator: D's parameters are frozen so G's backward does not touch them.
        D.requires_grad_(False)
        with self._autocast():
            x_hat = G(x_in)
            logits_fake, f_hat = D(x_hat)
            with torch.no_grad():
                _, f_real = D(x)
            g = generator_loss(logits_fake.float(), x_hat.float(), x.float(), f_hat.float(), f_real.float(), w)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(g["g"]).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        D.requires_grad_(True)
        # --- discriminator: on x and on the (detached) reconstruction made before G's update. Detaching
        # means no graph reaches into G's parameters, which G's optimizer step just modified in place.
        with self._autocast():
            logits_real, _ = D(x)
            logits_fake_d, _ = D(x_hat.detach())
            d = discriminator_loss(logits_real.float(), logits_fake_d.float())
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return {"g": g["g"].item(), "adv": g["adv"].item(), "con": g["con"].item(), "lat": g["lat"].item(),
                "d": d.item()}

    def _batches(self, n: int, gen: torch.Generator) -> list[torch.Tensor]:
        perm = torch.randperm(n, generator=gen)
        bs = self.cfg.batch_size
        batches = [perm[i : i + bs] for i in range(0, n, bs)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on a single image
            batches.pop()
        return batches

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _val_scores(self, val: torch.Tensor) -> Scores:
        with self._autocast():
            return score_in_batches(self.model, val)

    # ---------------------------------------------------------------- loop
    def fit(self, images: torch.Tensor) -> TrainResult:
        cfg = self.cfg
        train, val = split_validation(images, cfg.val_fraction, cfg.seed)
        for epoch in range(self.start_epoch, cfg.epochs):
            gen = epoch_generator(cfg.seed, epoch)
            self.model.train()
            sums: dict[str, float] = {}
            batches = self._batches(len(train), gen)
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       disable=not self.progress, dynamic_ncols=True)
            for idx in bar:
                x = self._to_device(train[idx])
                x_in = self.model.corruption.train_input(x, gen) if self.model.corruption.active else None
                losses = self.train_step(x, x_in)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
                if losses["d"] < D_REINIT_BELOW:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
                        init_weights(self.model.discriminator)
            bar.close()
            vs = self._val_scores(val).score
            row = {"epoch": epoch + 1, **{k: v / len(batches) for k, v in sums.items()},
                   "val_mean": float(vs.mean())}
            self.history.append(row)
            if cfg.select == "val" and (self.best is None or row["val_mean"] < self.best[0]):
                self.best = (row["val_mean"], epoch + 1, copy.deepcopy(self.model.state_dict()))
            self.log("epoch {epoch}/{n}  G {g:.4f} (adv {adv:.3f} con {con:.4f} lat {lat:.4f})  D {d:.4f}  "
                     "val score {val_mean:.5f}".format(n=cfg.epochs, **row))
            self._save_checkpoint(epoch + 1)

        selected = cfg.epochs
        if cfg.select == "val" and self.best is not None:
            _, selected, state = self.best
            self.model.load_state_dict(state)
        val = self._val_scores(val)
        if cfg.balance_lam:
            self.model.lam = balanced_lambda(cfg.lam, val.pixel, val.feature)
        lam = self.model.lam
        val_scores = lam * val.pixel + (1.0 - lam) * val.feature
        calibration = {**calibrate(val_scores, cfg.target_fpr), "lam": lam, "lam_requested": cfg.lam}
        return TrainResult(self.model.eval(), self.history, val_scores, calibration, selected)

    def _save_checkpoint(self, epoch: int) -> None:
        if self.out_dir is None:
            return
        meta = {"epoch": epoch, "history": self.history, "arch": dataclasses.asdict(self.arch),
                "config": self.cfg.to_dict(), "run_info": self.run_info}
        best_state = None
        if self.best is not None:
            meta.update(best_val_mean=self.best[0], best_epoch=self.best[1])
            best_state = self.best[2]
        save_checkpoint(self.out_dir, self.model, self.opt_g, self.opt_d, meta, best_state)
