"""The engine's pass for one batch size, recorded once and replayed without the Python around it (the CPU's
counterpart of the CUDA graphs the engine replays on a GPU).

Why: at batch 1 a pass is ~3.4 ms, of which the products are ~2.3 ms and the rest Python: slicing views of the
preallocated buffers, attribute lookups, ~250 view ops (benchmarks/profile_layers.py --ops). Every one of those views
is the same on every call of a batch size, because the buffers are. So the first pass of a batch size runs under a
dispatch mode that records each op call; ops that only view a persistent tensor are folded into constants, and a
replay calls the remaining ops (the products, copies, epilogues, and the views of what they return) in order,
feeding each the tensors the replay produced. No data-dependent control flow exists in the pass (tested equal to the
pass itself, exactly: the same kernels on the same data).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple[Any, tuple, dict, Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.calls.append((func, args, kwargs, out))
        return out


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


class Program:
    """Ops of one recorded pass: `replay()` runs them again on the same buffers."""

    def __init__(self, steps: list, n_values: int):
        self.steps = steps
        self.n_values = n_values

    @classmethod
    def record(cls, run: Callable[[], None]) -> "Program":
        """Run `run()` once (its effects happen) while recording its ops."""
        rec = _Recorder()
        with rec:
            run()
        produced: dict[int, int] = {}  # id(tensor made by a replayed step) -> its slot in the replay's values
        steps = []
        n_values = 0

        def bind(a):
            """An argument as (constant) or a reference to a produced value."""
            if isinstance(a, torch.Tensor) and id(a) in produced:
                return _Ref(produced[id(a)])
            if isinstance(a, (list, tuple)) and any(isinstance(t, torch.Tensor) and id(t) in produced for t in a):
                return _RefList([bind(t) for t in a], type(a))
            return a

        for func, args, kwargs, out in rec.calls:
            bound = [bind(a) for a in args]
            bound_kw = {k: bind(v) for k, v in kwargs.items()}
            dynamic = any(isinstance(b, (_Ref, _RefList)) for b in (*bound, *bound_kw.values()))
            if not dynamic and getattr(func, "is_view", False):
                continue  # a view of persistent tensors: the recorded one is the same on every call (constant)
            slots = []
            inputs = {id(t) for a in (*args, *kwargs.values()) for t in _tensors(a)}
            for t in _tensors(out):
                if id(t) in inputs:  # an in-place or out= op returning its own argument: nothing new
                    continue
                produced[id(t)] = n_values
                slots.append(n_values)
                n_values += 1
            steps.append((func, bound, bound_kw, dynamic, isinstance(out, torch.Tensor), slots))
        return cls(steps, n_values)

    def replay(self) -> None:
        values: list[Any] = [None] * self.n_values
        for func, args, kwargs, dynamic, single, slots in self.steps:
            if dynamic:
                out = func(*[_resolve(a, values) for a in args], **{k: _resolve(v, values) for k, v in kwargs.items()})
            else:
                out = func(*args, **kwargs)
            if slots:
                if single:
                    values[slots[0]] = out
                else:
                    for slot, t in zip(slots, (t for t in _tensors(out) if t is not None)):
                        values[slot] = t


class _Ref:
    __slots__ = ("slot",)

    def __init__(self, slot: int):
        self.slot = slot


class _RefList:
    __slots__ = ("items", "kind")

    def __init__(self, items: list, kind: type):
        self.items, self.kind = items, kind


def _resolve(a, values):
    if isinstance(a, _Ref):
        return values[a.slot]
    if isinstance(a, _RefList):
        return a.kind(_resolve(t, values) for t in a.items)
    return a


__all__ = ["Program"]
