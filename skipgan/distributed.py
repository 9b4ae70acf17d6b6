"""Scale-out under torchrun: one process per device, torch.distributed for the talking, rank 0 for the writing.

`skipgan train` and `skipgan score` run unchanged under `torchrun` (single node or multi-node rendezvous): torchrun
sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, `session()` turns them into a process group
(gloo on CPU, nccl on CUDA, `--dist-backend` to override) with a collective timeout (`--dist-timeout`), and
`Dist` carries the few collectives skipgan needs. Without torchrun (or with one process) nothing here is
initialised and every command behaves exactly as before. The command line's side (the --dist-* flags, exit
codes, one error line per node) is skipgan/cli/runner.py.

Rules kept by the callers:
- rank 0 alone writes files and prints; every rank computes;
- every collective is entered by every rank in the same order, and has a timeout, so a dead or stuck peer ends the
  job with a message instead of a hang (torchrun then stops the other workers and exits non-zero);
- gathered results are concatenated in rank order from contiguous shards, so they come back in input order with
  no duplicates and no padding;
- nothing is pickled: tensors travel as tensors, per-rank reports as JSON bytes.

Debugging aid: with SKIPGAN_DEBUG_DIGESTS=DIR in the environment, every rank appends one JSON line per epoch to
DIR/rank<R>.jsonl with SHA-256 digests of the generator's and discriminator's parameters and buffers (the tests use
it to check that the ranks stay identical).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import InputError

BACKENDS = ("auto", "gloo", "nccl")
# Long enough for any gap between two collectives of a healthy run (rank 0 writing a checkpoint, uneven data
# loading); short enough that a stuck peer does not hold a cluster for the 30 min of torch's default.
DEFAULT_TIMEOUT_S = 600.0
DIGESTS_ENV = "SKIPGAN_DEBUG_DIGESTS"


class PeerFailure(Exception):
    """A collective failed or timed out: another process died or stopped answering."""


def is_communication_error(e: BaseException) -> bool:
    """A failed or timed-out collective (gloo's errors name their gloo source file; nccl's say NCCL)."""
    import torch.distributed as dist

    msg = str(e).lower()
    return isinstance(e, getattr(dist, "DistError", ())) or "gloo" in msg or "nccl" in msg


def launched() -> bool:
    """True when this process is one of several started by torchrun (WORLD_SIZE > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in the job. The default, `SINGLE`, is the one-process job: every collective is the
    identity, so callers need no special case."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    # where collective tensors must live (nccl: this rank's GPU)
    comm_device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------------------------------ sharding
    def shard(self, n: int, unit: int = 1) -> range:
        """This rank's contiguous share of range(n), in whole blocks of `unit` items (all but the last block
        full): rank r gets blocks [r·b/W, (r+1)·b/W) of the b = ceil(n/unit) blocks. Shares never overlap, cover
        range(n) in rank order, and differ by at most one block; a rank may get none."""
        blocks = -(-n // unit)
        lo, hi = self.rank * blocks // self.world_size, (self.rank + 1) * blocks // self.world_size
        return range(min(n, lo * unit), min(n, hi * unit))

    # ------------------------------------------------------------------------------------------ collectives
    def failure(self, what: str, e: BaseException) -> PeerFailure:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return PeerFailure(f"rank {self.rank} of {self.world_size}: {what} failed ({first[:300]}): another process "
                           f"died or did not answer within --dist-timeout {self.timeout_s:g} s")

    def call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs) made of collectives only: any failure of it becomes a PeerFailure."""
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, ValueError) as e:  # torch.distributed.DistError and gloo/nccl errors are RuntimeErrors
            raise self.failure(what, e) from e

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Around computation with collectives inside (DDP's gradient all-reduce runs in backward): a failed or
        timed-out collective becomes a PeerFailure; every other error passes unchanged."""
        try:
            yield
        except RuntimeError as e:
            if not (self.enabled and is_communication_error(e)):
                raise
            raise self.failure(what, e) from e

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of `t` over the ranks (a new tensor on t's device)."""
        if not self.enabled:
            return t
        import torch.distributed as dist

        buf = t.detach().to(self.comm_device, copy=True)
        self.call("all_reduce", dist.all_reduce, buf)
        return (buf / self.world_size).to(t.device)

    def all_gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's `t` ([n_r, ...], n_r may differ and be 0) along dim 0 in rank order; every rank
        gets the result (on t's device). Padding to the longest share is removed again."""
        if not self.enabled:
            return t
        import torch.distributed as dist

        n = torch.tensor([t.shape[0]], dtype=torch.int64, device=self.comm_device)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        self.call("all_gather (sizes)", dist.all_gather, sizes, n)
        sizes_i = [int(s.item()) for s in sizes]
        longest = max(sizes_i)
        if longest == 0:
            return t.detach().clone()
        padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=self.comm_device)
        padded[: t.shape[0]] = t.detach().to(self.comm_device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        self.call("all_gather", dist.all_gather, parts, padded)
        return torch.cat([p[:k] for p, k in zip(parts, sizes_i)]).to(t.device)

    def all_gather_json(self, obj: Any) -> list[Any]:
        """Every rank's JSON-serialisable `obj`, in rank order, on every rank (sent as UTF-8 bytes, not pickled)."""
        if not self.enabled:
            return [obj]
        data = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8)
        sizes = self.all_gather_rows(torch.tensor([data.numel()], dtype=torch.int64))
        flat = self.all_gather_rows(data).numpy().tobytes()
        out, at = [], 0
        for k in sizes.tolist():
            out.append(json.loads(flat[at : at + k].decode()))
            at += k
        return out

    def average_buffers(self, module: torch.nn.Module) -> None:
        """Replace every floating-point BatchNorm running statistic by its mean over the ranks (per-process BN
        trains each rank's statistics on its own batches; scoring needs one set, the same on every rank)."""
        if not self.enabled:
            return
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                for buf in (m.running_mean, m.running_var):
                    if buf is not None:
                        buf.copy_(self.all_reduce_mean(buf))


SINGLE = Dist()


# ---------------------------------------------------------------------------------------------- set-up
def resolve_backend(name: str, device: torch.device) -> str:
    if name not in BACKENDS:
        raise InputError(f"--dist-backend {name}: expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise InputError("--dist-backend nccl: nccl needs CUDA devices; use --dist-backend gloo (or auto) on CPU")
    return name


def check_timeout(timeout_s: float) -> float:
    if not (timeout_s > 0 and timeout_s < float("inf")):
        raise InputError(f"--dist-timeout {timeout_s:g}: must be a positive number of seconds")
    return float(timeout_s)


def _terminate_cleanly(signum, frame):  # pragma: no cover - exercised by torchrun stopping a failed job
    # torchrun stops the surviving workers of a failed job with SIGTERM: leave through SystemExit so that `finally`
    # blocks run (a half-written file's temp copy is removed; the previous checkpoint was never touched).
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def session(device: torch.device, backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S
            ) -> Iterator[tuple[Dist, torch.device]]:
    """(Dist, this process's device). Under torchrun with more than one process: a process group for the block,
    one GPU per local rank on CUDA; otherwise (SINGLE, device) and nothing else happens."""
    timeout_s = check_timeout(timeout_s)
    name = resolve_backend(backend, device)
    if not launched():
        yield SINGLE, device
        return
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"--device cuda: local rank {local_rank} but only {torch.cuda.device_count()} GPU(s) "
                             "visible; start at most that many processes per node (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    comm_device = str(device) if name == "nccl" else "cpu"
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        # torchrun's store (MASTER_ADDR:MASTER_PORT), under a prefix of its own for every restart of the job
        # (--max-restarts): the keys a failed attempt left there (e.g. gloo's peer addresses) must not be read as
        # this attempt's.
        store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timeout))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"skipgan/attempt_{attempt}", store)
        dist.init_process_group(name, store=store, rank=rank, world_size=world, timeout=timeout,
                                **({"device_id": device} if name == "nccl" else {}))
    except (RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PeerFailure(f"rank {rank} of {world}: could not join the process group ({first[:300]})") from e
    previous = signal.signal(signal.SIGTERM, _terminate_cleanly)
    try:
        yield Dist(rank, world, local_rank, name, timeout_s, comm_device), device
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- debugging
def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 over the names, dtypes and bytes of every parameter and buffer (in state_dict order)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def digest_hook(d: Dist):
    """An on-epoch-end hook writing the debug digests (see the module docstring), or None when not asked for."""
    folder = os.environ.get(DIGESTS_ENV)
    if not folder:
        return None
    path = Path(folder) / f"rank{d.rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    def hook(trainer, epoch: int) -> None:
        model = trainer.model
        line = {"epoch": epoch, "rank": d.rank, "world_size": d.world_size,
                "generator": state_digest(model.generator), "discriminator": state_digest(model.discriminator)}
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")

    return hook
