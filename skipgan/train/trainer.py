"""The Skip-GANomaly training loop.

Honest protocol: every score is computed in eval() mode; model selection (optional) and threshold calibration
use only a validation split carved out of the normal training images, never test data.

Reproducibility: the weights are initialised from `seed`; every later random draw (shuffling, input corruption,
discriminator re-initialisation) comes from a generator seeded by (seed, epoch), so a resumed run continues
exactly as the uninterrupted one would, and CPU runs with the same seed are bit-identical.

Under torchrun (`dist` with more than one process; see skipgan/distributed.py) G and D are wrapped in
DistributedDataParallel and:
- every process takes `batch_size` images per step (the global batch is world_size × batch_size); a
  DistributedSampler seeded by (seed, epoch) deals each process its share of every epoch;
- input corruption draws come from a generator seeded by (seed, epoch, rank); discriminator re-initialisation is
  decided on the loss averaged over the processes and seeded by (seed, epoch), so every process does the same;
- BatchNorm uses each process's own batch statistics (or SyncBatchNorm with `sync_bn`, CUDA only); at the end of
  every epoch the running statistics are averaged over the processes, so all processes hold the same model;
- validation scores are computed on contiguous shares of the validation split and gathered in order, so the
  calibration is the one a single process computes on the same validation images;
- only rank 0 logs, shows progress and writes checkpoints.
With the same seed and number of processes a CPU run is bit-reproducible, resumed or not. With one process the
trainer is exactly the single-process one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import inspect
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..distributed import SINGLE, Dist
from ..model import Architecture, SkipGANomaly, init_weights, score_in_batches
from ..model.patch_knn import PatchKnn
from ..progress import log_line, track
from ..scoring import Scores, weigh
from .aggregation_choice import AUTO, choose_aggregation
from .calibrate import balanced_lambda, calibrate_maps
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .config import TrainConfig
from .losses import discriminator_loss, generator_loss

D_REINIT_BELOW = 1e-5  # the official recipe: a collapsed discriminator is re-initialised


@dataclasses.dataclass
class TrainResult:
    model: SkipGANomaly
    history: list[dict[str, float]]
    val_scores: torch.Tensor
    calibration: dict[str, Any]  # of the model's score (`aggregation`); the paper mean's when that is 'mean'
    selected_epoch: int
    # every aggregation's calibration, and the calibrated anomaly-map settings (skipgan/anomaly_map.py)
    calibrations: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    map_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    aggregation: str = "mean"  # the model's image score: cfg.aggregation, or the one chosen for 'auto'
    aggregation_choice: dict[str, Any] | None = None  # with 'auto': the choice and its synthetic AUROCs


def split_validation(images: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): a seeded random `fraction` of the normal training images is held out for validation."""
    n_val = max(1, int(round(len(images) * fraction)))
    if len(images) - n_val < 2:
        raise ValueError(f"only {len(images)} training images: need at least {n_val + 2} for a validation split")
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[perm[n_val:]], images[perm[:n_val]]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def rank_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The random draws of one process in one epoch under torchrun: a stream of its own per (seed, epoch, rank)."""
    key = hashlib.sha256(f"skipgan/{seed}/{epoch}/{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:7], "little"))


def convert_sync_batchnorm(module: torch.nn.Module) -> None:
    """Replace, in place, every BatchNorm2d child by a SyncBatchNorm sharing its parameters and buffers."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(module, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            convert_sync_batchnorm(child)


def revert_sync_batchnorm(module: torch.nn.Module) -> None:
    """The inverse of convert_sync_batchnorm: plain BatchNorm2d again (model files, the engine and exports want it)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.SyncBatchNorm):
            bn = torch.nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats, device=child.running_mean.device)
            if child.affine:
                bn.weight, bn.bias = child.weight, child.bias
            bn.running_mean, bn.running_var = child.running_mean, child.running_var
            bn.num_batches_tracked = child.num_batches_tracked
            bn.train(child.training)
            setattr(module, name, bn)
        else:
            revert_sync_batchnorm(child)


class Trainer:
    def __init__(
        self,
        arch: Architecture,
        cfg: TrainConfig,
        device: str | torch.device = "cpu",
        out_dir: str | os.PathLike | None = None,
        run_info: dict[str, Any] | None = None,
        progress: bool = True,
        log: Callable[[str], None] = log_line,
        dist: Dist = SINGLE,
        on_epoch_end: Callable[["Trainer", int], None] | None = None,
    ):
        """dist: this process's place in a torchrun job (default: the only process). on_epoch_end(trainer, epoch)
        is called on every process after every epoch (epoch counted from 1), once the processes agree again."""
        self.arch, self.cfg, self.device = arch, cfg, torch.device(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_info = run_info or {}
        self.dist, self.on_epoch_end = dist, on_epoch_end
        # only rank 0 talks
        self.progress, self.log = (progress, log) if dist.is_main else (False, lambda s: None)
        self.sync_bn = cfg.sync_bn and dist.enabled
        if self.sync_bn and self.device.type != "cuda":
            raise ValueError("sync_bn=True: torch's SyncBatchNorm runs on CUDA only; on CPU train with per-process "
                             "BatchNorm statistics (the default)")
        torch.manual_seed(cfg.seed)
        self.model = SkipGANomaly(arch, lam=cfg.lam, margin=cfg.score_margin, corruption=cfg.corruption)
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.sync_bn:
            convert_sync_batchnorm(self.model)
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
        # What takes the training steps: DDP wrappers of G and D under torchrun (they all-reduce the gradients in
        # backward), the networks themselves otherwise. Both share the model's parameters.
        self.G, self.D = G, D
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # BatchNorm buffers are not broadcast from rank 0 at every forward: per-process statistics, averaged
            # at the end of every epoch (Dist.average_buffers).
            kw = {"device_ids": [self.device.index] if self.device.type == "cuda" else None}
            kw["forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters
               else "broadcast_buffers"] = False
            self.G = dist.call("DistributedDataParallel set-up", DDP, G, **kw)
            self.D = dist.call("DistributedDataParallel set-up", DDP, D, **kw)

    # ---------------------------------------------------------------- resume
    def resume(self) -> None:
        if self.out_dir is None:
            raise ValueError("resume needs out_dir")
        tensors, meta = load_checkpoint(self.out_dir)
        best = restore(self.model, self.opt_g, self.opt_d, tensors, meta)
        self.history = meta["history"]
        self.start_epoch = meta["epoch"]
        saved_world = meta.get("world_size", 1)
        if saved_world != self.dist.world_size:
            self.log(f"note: resuming a run of {saved_world} process(es) with {self.dist.world_size}: it continues "
                     "correctly, but not bit-identically to the uninterrupted run (the data is dealt differently)")
        if best is not None:
            self.best = (meta["best_val_mean"], meta["best_epoch"], best)

    # ---------------------------------------------------------------- steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, x: torch.Tensor, x_in: torch.Tensor | None = None) -> dict[str, float]:
        """One G update then one D update on a batch of normal images x; the generator sees x_in (default x).
        Under torchrun the returned losses are the means over the processes (the same on every process)."""
        G, D, w = self.G, self.D, self.cfg.loss_weights
        D_frozen = self.model.discriminator  # D itself, never its DDP wrapper: nothing of D is reduced in G's step
        x_in = x if x_in is None else x_in
        # --- generator: D's parameters are frozen so G's backward does not touch them.
        D_frozen.requires_grad_(False)
        with self._autocast():
            x_hat = G(x_in)
            logits_fake, f_hat = D_frozen(x_hat)
            with torch.no_grad():
                _, f_real = D_frozen(x)
            g = generator_loss(logits_fake.float(), x_hat.float(), x.float(), f_hat.float(), f_real.float(), w)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(g["g"]).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        D_frozen.requires_grad_(True)
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
        losses = torch.stack([g["g"], g["adv"], g["con"], g["lat"], d]).detach()
        if self.dist.enabled:
            losses = self.dist.all_reduce_mean(losses)
        return dict(zip(("g", "adv", "con", "lat", "d"), losses.tolist()))

    def _batches(self, n: int, gen: torch.Generator, epoch: int) -> list[torch.Tensor]:
        if self.dist.enabled:
            from torch.utils.data import DistributedSampler

            # every process gets ceil(n / world_size) indices (a few repeated to even the shares), so all take the
            # same number of steps
            sampler = DistributedSampler(range(n), num_replicas=self.dist.world_size, rank=self.dist.rank,
                                         shuffle=True, seed=self.cfg.seed, drop_last=False)
            sampler.set_epoch(epoch)
            perm = torch.tensor(list(sampler), dtype=torch.int64)
        else:
            perm = torch.randperm(n, generator=gen)
        bs = self.cfg.batch_size
        batches = [perm[i : i + bs] for i in range(0, len(perm), bs)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on a single image
            batches.pop()
        return batches

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _val_scores(self, val: torch.Tensor, error_map: bool = False) -> Scores:
        """Scores of the validation images, in their order; under torchrun each process scores a contiguous share
        and the shares are gathered (every process gets them all). With error_map (for the map calibration, once
        per run) every process scores all of them, maps included."""
        if error_map:
            with self._autocast():
                return score_in_batches(self.model, val, with_error_map=True)
        share = self.dist.shard(len(val))
        with self._autocast():
            s = score_in_batches(self.model, val[share.start : share.stop])
        if not self.dist.enabled:
            return s
        rows = self.dist.all_gather_rows(torch.stack([s.score, s.pixel, s.feature], 1))
        return Scores(rows[:, 0].contiguous(), rows[:, 1].contiguous(), rows[:, 2].contiguous())

    # ---------------------------------------------------------------- loop
    def fit(self, images: torch.Tensor) -> TrainResult:
        cfg = self.cfg
        train, val = split_validation(images, cfg.val_fraction, cfg.seed)
        if -(-len(train) // self.dist.world_size) < 2:
            raise ValueError(f"only {len(train)} training images for {self.dist.world_size} processes: every process "
                             "needs at least 2 (BatchNorm)")
        with self.dist.guard("training"):
            self._epochs(train, val)
        if self.sync_bn:
            revert_sync_batchnorm(self.model)
        selected = cfg.epochs
        if cfg.select == "val" and self.best is not None:
            _, selected, state = self.best
            self.model.load_state_dict(state)
        knn = cfg.knn_settings
        # the knn map's memory: training images only, so that the validation normals below calibrate it honestly
        self.model.knn = PatchKnn.fit(self.model, train, knn, seed=cfg.seed, calibration=val) \
            if knn is not None else None
        with self.dist.guard("validation"):
            scored = self._val_scores(val, error_map=True)
        if cfg.balance_lam:
            self.model.lam = balanced_lambda(cfg.lam, scored.pixel, scored.feature)
        lam = self.model.lam
        val_scores = weigh(scored.pixel, scored.feature, lam)  # the model's score with the λ it now has
        settings, cals = calibrate_maps(scored.error_map, val_scores, cfg.map_settings, cfg.target_fpr,
                                        scored.knn_map)
        cals = {k: {**v, "lam": lam, "lam_requested": cfg.lam} for k, v in cals.items()}
        how, choice = cfg.aggregation, None
        if how == AUTO:  # judged on synthetic defects in the validation normals (train/aggregation_choice.py)
            with self.dist.guard("choosing the aggregation"):
                choice = choose_aggregation(lambda x: self._val_scores(x, error_map=True),
                                            dataclasses.replace(scored, score=val_scores), val, train, settings,
                                            seed=cfg.seed, candidates=tuple(cals))
            how = choice["chosen"]
            self.log(f"aggregation: {how} (synthetic-defect AUROC "
                     + ", ".join(f"{k} {v['all']:.3f}" for k, v in choice["synthetic_auroc"].items()) + ")")
        return TrainResult(self.model.eval(), self.history, val_scores, cals[how], selected,
                           calibrations=cals, map_settings=settings.to_meta(), aggregation=how,
                           aggregation_choice=choice)

    def _epochs(self, train: torch.Tensor, val: torch.Tensor) -> None:
        cfg = self.cfg
        for epoch in range(self.start_epoch, cfg.epochs):
            # gen: shuffling and re-initialisation draws, the same on every process; rank_gen: input corruption
            gen = epoch_generator(cfg.seed, epoch)
            rank_gen = rank_generator(cfg.seed, epoch, self.dist.rank) if self.dist.enabled else gen
            self.model.train()
            sums: dict[str, float] = {}
            batches = self._batches(len(train), gen, epoch)
            # a bar on a terminal; in a file or a pipe no bar, the epoch line below (skipgan/progress.py)
            bar = track(batches, f"epoch {epoch + 1}/{cfg.epochs}", enabled=self.progress)
            t_epoch = time.perf_counter()
            for idx in bar:
                x = self._to_device(train[idx])
                x_in = self.model.corruption.train_input(x, rank_gen) if self.model.corruption.active else None
                losses = self.train_step(x, x_in)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
                if losses["d"] < D_REINIT_BELOW:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
                        init_weights(self.model.discriminator)
            bar.close()
            train_s = time.perf_counter() - t_epoch  # the training steps (of every process: they wait for each other)
            seen = sum(len(idx) for idx in batches) * self.dist.world_size
            if self.dist.enabled and not self.sync_bn:
                self.dist.average_buffers(self.model)
            vs = self._val_scores(val).score
            row = {"epoch": epoch + 1, **{k: v / len(batches) for k, v in sums.items()},
                   "val_mean": float(vs.mean()), "train_s": round(train_s, 3),
                   "images_per_s": round(seen / max(train_s, 1e-9), 1)}
            self.history.append(row)
            if cfg.select == "val" and (self.best is None or row["val_mean"] < self.best[0]):
                self.best = (row["val_mean"], epoch + 1, copy.deepcopy(self.model.state_dict()))
            self.log("epoch {epoch}/{n}  G {g:.4f} (adv {adv:.3f} con {con:.4f} lat {lat:.4f})  D {d:.4f}  "
                     "val score {val_mean:.5f}  {images_per_s:.0f} images/s".format(n=cfg.epochs, **row))
            self._save_checkpoint(epoch + 1)
            if self.on_epoch_end is not None:
                self.on_epoch_end(self, epoch + 1)

    def _save_checkpoint(self, epoch: int) -> None:
        if self.out_dir is None or not self.dist.is_main:
            return
        meta = {"epoch": epoch, "history": self.history, "arch": dataclasses.asdict(self.arch),
                "config": self.cfg.to_dict(), "run_info": self.run_info, "world_size": self.dist.world_size}
        best_state = None
        if self.best is not None:
            meta.update(best_val_mean=self.best[0], best_epoch=self.best[1])
            best_state = self.best[2]
        save_checkpoint(self.out_dir, self.model, self.opt_g, self.opt_d, meta, best_state)
