"""Model shapes and semantics: the explicit-activation UNet equals the original in-place pix2pix network."""

import numpy as np
import pytest
import torch
from torch import nn

from skipgan.errors import InputError
from skipgan.isize import ISIZES, check_isize
from skipgan.model import Architecture, Discriminator, Scores, SkipGANomaly, UNetGenerator, score_in_batches


@pytest.mark.parametrize("isize", [32, 64, 128, 256])
@pytest.mark.parametrize("nc", [1, 2, 3])
def test_shapes(isize, nc):
    arch = Architecture(isize=isize, nc=nc, ngf=8, ndf=8, nz=16)
    m = SkipGANomaly(arch).eval()
    x = torch.rand(2, nc, isize, isize) * 2 - 1
    with torch.no_grad():
        s = m.score(x, with_error_map=True)
        logits, f = m.discriminator(x)
    assert s.reconstruction.shape == x.shape
    assert s.score.shape == s.pixel.shape == s.feature.shape == (2,)
    assert s.error_map.shape == (2, isize, isize)
    assert s.score.dtype == torch.float32
    assert logits.shape == (2,) and f.shape == (2, 16)
    assert s.reconstruction.abs().max() <= 1  # tanh output
    assert len(m.generator.down) == isize.bit_length() - 1  # num_downs = log2(isize): innermost map is 1x1


def test_widths_follow_pix2pix():
    g = UNetGenerator(isize=256, nc=3, ngf=64)
    assert [lvl.conv.out_channels for lvl in g.down] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [lvl.bn is not None for lvl in g.down] == [False] + [True] * 6 + [False]  # outermost, innermost: no BN
    assert g.up[0].conv.bias is not None and g.up[0].bn is None  # outermost: bias, tanh
    assert all(lvl.conv.bias is None for lvl in g.up[1:])
    for m in g.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            assert m.kernel_size == (4, 4) and m.stride == (2, 2) and m.padding == (1, 1)


def test_discriminator_pyramid_reaches_4x4():
    d = Discriminator(isize=128, nc=2, ndf=8, nz=100)
    x = torch.randn(3, 2, 128, 128)
    assert d.pyramid(x).shape == (3, 8 * 16, 4, 4)
    assert d.features(x).shape == (3, 100)


@pytest.mark.parametrize("bad", [16, 31, 48, 1024, 0, -32])
def test_bad_isize_is_a_clear_error(bad):
    msg = f"isize={bad}: must be a power of two from 32 to 512 \\(32, 64, 128, 256 or 512\\)"
    with pytest.raises(ValueError, match=msg) as ei:
        check_isize(bad)
    assert isinstance(ei.value, InputError)  # one error for the model, the data loaders and the CLI
    for build in (lambda: Architecture(isize=bad), lambda: UNetGenerator(isize=bad), lambda: Discriminator(isize=bad)):
        with pytest.raises(ValueError, match=msg):
            build()


def test_isize_rule():
    assert ISIZES == (32, 64, 128, 256, 512)
    assert [check_isize(s) for s in ISIZES] == list(ISIZES)
    assert check_isize(np.int64(64)) == 64 and type(check_isize(np.int64(64))) is int
    for bad in (True, 32.0, "32", None):
        with pytest.raises(ValueError, match="must be a power of two"):
            check_isize(bad)


@pytest.mark.parametrize("batch_size", [2, 256])
def test_score_in_batches_returns_scores_on_cpu_in_fp32(batch_size):
    torch.manual_seed(0)
    m = SkipGANomaly(Architecture(isize=32, nc=1, ngf=4, ndf=4, nz=8)).train()  # 8 noise probes by default
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    s = score_in_batches(m, x, batch_size)
    assert isinstance(s, Scores) and len(s) == 5 and m.training  # mode restored
    assert s.reconstruction is None and s.error_map is None
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in (s.score, s.pixel, s.feature))
    full = score_in_batches(m, x, batch_size, with_error_map=True, keep_reconstructions=True)
    assert full.reconstruction.shape == x.shape and full.error_map.shape == (5, 32, 32)
    with torch.no_grad():
        ref = m.eval().score(x, with_error_map=True)
    for name in ("score", "pixel", "feature", "reconstruction", "error_map"):
        torch.testing.assert_close(getattr(full, name), getattr(ref, name), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.score, ref.score, rtol=1e-5, atol=1e-6)
    empty = score_in_batches(m, x[:0], batch_size, with_error_map=True, keep_reconstructions=True)
    assert len(empty) == 0 and empty.reconstruction.shape == (0, 1, 32, 32) and empty.error_map.shape == (0, 32, 32)


# ---- the original pix2pix UnetSkipConnectionBlock, with its in-place LeakyReLU/ReLU, as an oracle --------------
class Pix2PixBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=False)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=False)
            model = [downrelu, downconv, uprelu, upconv, nn.BatchNorm2d(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=False)
            model = [downrelu, downconv, nn.BatchNorm2d(inner_nc), submodule, uprelu, upconv, nn.BatchNorm2d(outer_nc)]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)  # x was changed in place by downrelu: the skip is LeakyReLU(y)


def pix2pix_unet(nc, ngf, num_downs):
    block = Pix2PixBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(num_downs - 5):
        block = Pix2PixBlock(ngf * 8, ngf * 8, submodule=block)
    block = Pix2PixBlock(ngf * 4, ngf * 8, submodule=block)
    block = Pix2PixBlock(ngf * 2, ngf * 4, submodule=block)
    block = Pix2PixBlock(ngf, ngf * 2, submodule=block)
    return Pix2PixBlock(nc, ngf, input_nc=nc, submodule=block, outermost=True)


def oracle_layers(block):
    """(down convs, down BNs, up convs, up BNs) of the pix2pix net, outermost level first."""
    downs, dbns, ups, ubns = [], [], [], []
    while block is not None:
        mods = list(block.model)
        convs = [m for m in mods if isinstance(m, nn.Conv2d)]
        tconvs = [m for m in mods if isinstance(m, nn.ConvTranspose2d)]
        bns = [m for m in mods if isinstance(m, nn.BatchNorm2d)]
        downs.append(convs[0])
        ups.append(tconvs[0])
        dbns.append(bns[0] if len(bns) == 2 else None)
        ubns.append(bns[-1] if bns else None)
        sub = [m for m in mods if isinstance(m, Pix2PixBlock)]
        block = sub[0] if sub else None
    return downs, dbns, ups, ubns


@pytest.mark.parametrize("isize", [32, 64])
@pytest.mark.parametrize("train", [False, True])
def test_unet_equals_inplace_pix2pix(isize, train):
    torch.manual_seed(0)
    ours = UNetGenerator(isize=isize, nc=2, ngf=8)
    ref = pix2pix_unet(2, 8, isize.bit_length() - 1)
    downs, dbns, ups, ubns = oracle_layers(ref)
    for k, (lvl_d, lvl_u) in enumerate(zip(ours.down, ours.up)):
        downs[k].load_state_dict(lvl_d.conv.state_dict())
        ups[k].load_state_dict(lvl_u.conv.state_dict())
        assert (dbns[k] is None) == (lvl_d.bn is None)
        assert (ubns[k] is None) == (lvl_u.bn is None)
        if lvl_d.bn is not None:
            lvl_d.bn.weight.data.uniform_(0.5, 1.5)
            lvl_d.bn.running_var.uniform_(0.5, 2)
            dbns[k].load_state_dict(lvl_d.bn.state_dict())
        if lvl_u.bn is not None:
            lvl_u.bn.bias.data.uniform_(-0.5, 0.5)
            lvl_u.bn.running_mean.uniform_(-0.5, 0.5)
            ubns[k].load_state_dict(lvl_u.bn.state_dict())
    ours.train(train)
    ref.train(train)
    x = torch.randn(4, 2, isize, isize)
    torch.testing.assert_close(ours(x.clone()), ref(x.clone()), rtol=1e-5, atol=1e-6)


def test_score_margin_leaves_the_border_out_of_the_pixel_error():
    torch.manual_seed(0)
    m = SkipGANomaly(Architecture(isize=32, nc=1, ngf=4, ndf=4, nz=8), lam=1.0, margin=2).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        s = m.score(x, with_error_map=True)
    inner = (x - s.reconstruction)[:, :, 2:30, 2:30].pow(2).flatten(1).mean(1)
    torch.testing.assert_close(s.pixel, inner)
    torch.testing.assert_close(s.score, inner)
    assert s.error_map.shape == (3, 32, 32)  # the map still shows the whole image
    with pytest.raises(ValueError, match="score_margin=8: must be in"):
        SkipGANomaly(Architecture(isize=32, nc=1, ngf=4, ndf=4, nz=8), margin=8)
