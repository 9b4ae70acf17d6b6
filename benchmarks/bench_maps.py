"""What the anomaly maps cost: engine images/s for scores only, + the error map, + the knn map, in one run.

    python benchmarks/bench_maps.py                                  # random default model, isize 64, K = 8
    python benchmarks/bench_maps.py --model runs/brick/model.safetensors --batch 64 --dtype bf16

Timing does not depend on the weights, so without --model a randomly initialised default-width model is used and
its knn memory (the default settings: 10,000 descriptors) is fitted on random images. With whitened pixel patches
(the default) a row times the same map with raw ones (a memory fitted again without whitening), and a last one with
the opt-in relative pixel patches (--knn-relative-sigma 4). Images/s are medians of timed calls
(skipgan.bench's timer); the ratios are the claim, the absolute numbers belong to this machine and run.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from skipgan.anomaly_map import MapSettings, image_scores
from skipgan.bench import make_model, median_time
from skipgan.engine import Screener
from skipgan.modelfile import load_model
from skipgan.model.patch_knn import PatchKnn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--isize", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--min-time", type=float, default=3.0)
    a = p.parse_args()
    if a.model:
        model, meta = load_model(a.model)
        settings = MapSettings.from_meta(meta)
    else:
        model, settings = make_model(isize=a.isize, nc=1, probes=8), MapSettings()
        model.knn = PatchKnn.fit(model, torch.rand(300, 1, a.isize, a.isize) * 2 - 1)
    isize = model.arch.isize
    x = torch.rand(a.batch, model.arch.nc, isize, isize) * 2 - 1
    plain = Screener.from_model(model, dtype=a.dtype, max_batch=a.batch, knn=None)  # no knn work with the maps
    sc = Screener.from_model(model, dtype=a.dtype, max_batch=a.batch)
    cases = {
        "scores only": lambda: plain.score(x),
        "+ error map (max aggregation)": lambda: image_scores(plain.score(x, error_map=True), "max", settings),
        "+ knn map (knn aggregation)": lambda: image_scores(sc.score(x, error_map=True), "knn", settings),
    }

    def knn_case(**changes):
        """The knn map of a memory fitted again with other settings, timed as the model's own."""
        knn = PatchKnn.fit(model, torch.rand(300, model.arch.nc, isize, isize) * 2 - 1,
                           dataclasses.replace(model.knn.settings, **changes))
        other = Screener.from_model(model, dtype=a.dtype, max_batch=a.batch, knn=knn)
        return lambda: image_scores(other.score(x, error_map=True), "knn", settings)

    if model.knn.whitening is not None:  # what whitening the pixel patches costs: the same map with raw ones
        cases["+ knn map, raw pixel patches"] = knn_case(intensity_whiten=False)
    if model.knn.settings.relative_sigma == 0:  # what the opt-in --knn-relative-sigma 4 costs: its local mean
        cases["+ knn map, relative pixel patches (σ 4)"] = knn_case(relative_sigma=4.0)
    rows = [(name, a.batch / median_time(fn, torch.device("cpu"), a.min_time)) for name, fn in cases.items()]
    print(f"isize {isize}, batch {a.batch}, {a.dtype}, {model.probe_weight.shape[0]} probes, threads "
          f"{torch.get_num_threads()}, knn memory {tuple(model.knn.memory.shape)}")
    print("| scoring | images/s | vs scores only |\n|---|---:|---:|")
    for name, ips in rows:
        print(f"| {name} | {ips:.1f} | {ips / rows[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
