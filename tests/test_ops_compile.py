"""The native ops under torch.compile (fullgraph), torch.export and TorchScript.

Kept to a few small graphs: compiling is the slow part of the ops suite.
"""

import warnings

import pytest
import torch

from skipgan import ops

# TorchScript cannot read module globals: activation codes are literals below (2 = leaky_relu, 1 = relu).
assert ops.ACTIVATIONS["leaky_relu"] == 2 and ops.ACTIVATIONS["relu"] == 1


def level_and_score(x, w, scale, shift, x_hat, f, f_hat):
    """A UNet level writing into a concat buffer, then the score: the engine's use of both ops."""
    n, c = x.shape[0], w.shape[0]
    h, wd = x.shape[2] // 2, x.shape[3] // 2
    nxt = torch.empty(n, c, h, wd, dtype=x.dtype, device=x.device)
    cat = torch.empty(n, 2 * c, h, wd, dtype=x.dtype, device=x.device)
    torch.ops.skipgan.conv_bn_act_out(x, w, scale, shift, [2, 2], [1, 1], False, 2, 0.2, nxt, 1, cat[:, :c])
    scores = torch.ops.skipgan.anomaly_score(x, x_hat, f, f_hat, 0.9)
    maps = torch.empty(n, x.shape[2], x.shape[3], device=x.device)
    scores2 = torch.empty(n, device=x.device)
    torch.ops.skipgan.anomaly_score_out(x, x_hat, f, f_hat, 0.9, scores2, maps)
    return nxt, cat[:, :c], scores, scores2, maps


def inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g)
    return (x, torch.randn(4, 3, 4, 4, generator=g) / 7, 0.5 + torch.rand(4, generator=g), torch.randn(4, generator=g),
            x + 0.1 * torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g))


def assert_same(got, want):
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_torch_compile_fullgraph():
    args = inputs()
    want = level_and_score(*args)
    torch._dynamo.reset()
    compiled = torch.compile(level_and_score, fullgraph=True, backend="inductor")
    assert_same(compiled(*args), want)


def test_torch_export():
    class Score(torch.nn.Module):
        def forward(self, x, w, scale, shift, x_hat, f, f_hat):
            return level_and_score(x, w, scale, shift, x_hat, f, f_hat)

    args = inputs()
    ep = torch.export.export(Score(), args)
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert any("skipgan.anomaly_score" in t for t in targets)
    assert_same(ep.module()(*args), level_and_score(*args))


def test_torchscript():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in torch 2.14 but still the scanner's format
        scripted = torch.jit.script(level_and_score)
    args = inputs()
    assert_same(scripted(*args), level_and_score(*args))
    assert "skipgan::conv_bn_act_out" in str(scripted.graph)


@pytest.mark.cuda
def test_torch_compile_cuda():
    args = [a.cuda() for a in inputs()]
    want = level_and_score(*args)
    torch._dynamo.reset()
    assert_same(torch.compile(level_and_score, fullgraph=True)(*args), want)
