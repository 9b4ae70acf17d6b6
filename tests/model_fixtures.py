"""Small models with non-trivial BatchNorm statistics, shared by the engine and export tests."""

import torch
from torch import nn

from skipgan.model import Architecture, Corruption, SkipGANomaly


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so that BN folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(1 + torch.randn(c, generator=g) * 0.1)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


def make(isize=32, nc=1, probes=0, margin=0, width=8, seed=0, lam=0.9, masks=False):
    torch.manual_seed(seed)
    corr = Corruption(mask_block=isize // 4, mask_groups=4) if masks else \
        Corruption(noise_std=2.0 if probes else 0.0, score_draws=probes)
    m = SkipGANomaly(Architecture(isize=isize, nc=nc, ngf=width, ndf=width, nz=16), lam=lam, margin=margin,
                     corruption=corr)
    randomise_bn(m, seed)
    return m.eval()


def make_int8(nc=1, probes=2, margin=1, kept=(), seed=0, negative_bn=False):
    """make()'s model as an int8 model (every layer quantised but `kept`), its grids observed on random inputs.
    negative_bn: some channels' folded BN scale negative (QDQ scales must be positive: the sign moves)."""
    from skipgan.quant import Int8Params
    from skipgan.quant.calibrate import all_layers_int8, observe_input_ranges

    m = make(nc=nc, probes=probes, margin=margin, seed=seed)
    if negative_bn:
        with torch.no_grad():
            for level in m.generator.down[1:3]:
                level.bn.weight[::2] *= -1
    x = torch.rand(24, nc, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    params = all_layers_int8(m, observe_input_ranges(m, x))
    m.int8 = Int8Params(params.inputs, params.weight_scales, tuple(kept))
    return m


def images(n, nc, isize, seed=1):
    return torch.rand(n, nc, isize, isize, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# `skipgan train` flags of a seconds-long run: 1 epoch of a 4-wide network at isize 32, the paper's clean input
TINY_TRAIN = ["--epochs", "1", "--ngf", "4", "--ndf", "4", "--nz", "8", "--no-progress", "--device", "cpu",
              "--isize", "32", "--noise-std", "0", "--score-draws", "0"]


def train_run(tmp, data, *flags):
    """Train on folder `data` with TINY_TRAIN and `flags` (a quarter held out for validation) into tmp/run;
    returns (data, run folder)."""
    from skipgan.cli import main

    out = tmp / "run"
    assert main(["train", "--data", f"folder:{data}", "--out", str(out), "--val-fraction", "0.25", *flags,
                 *TINY_TRAIN]) == 0
    return data, out


def export_claiming_device(path, device, out):
    """A copy of the TorchScript export `path` whose metadata says it was exported for `device` (the archive's other
    records untouched): a file of another device, for the device-contract tests on a machine without that device."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/extra/skipgan.json"):
                data = json.dumps({**json.loads(data), "device": device}, sort_keys=True).encode()
            dst.writestr(info.filename, data)
    return out
