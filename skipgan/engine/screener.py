"""The fused screening engine: a trained Skip-GANomaly turned into a fixed pipeline over preallocated buffers.

    screener = Screener.from_model(model, dtype=torch.bfloat16, max_batch=64)
    result = screener.score(x)        # x: [B, C, isize, isize] in [-1, 1] -> skipgan.scoring.Scores

Data flow (docs/architecture.md), per tile of the K·B generator batch:

    probes   g = x·scale_k + shift_k, written into the interior of a zero-bordered buffer (K = 0: g is x itself)
    encoder  one GEMM per level; ONE epilogue pass writes LeakyReLU(y) into the next level's input buffer and
             ReLU(y) into the left half of the decoder's concatenation buffer
    decoder  one GEMM per level; the fold + epilogue writes ReLU(BN(.)) into the right half of the next
             concatenation buffer; the last level writes Σ_k w_k·tanh(. + bias) straight into the second half
             of the discriminator's input buffer, whose first half already holds x
    D        runs once over [x; x̂]; f(x) and f(x̂) land in one buffer
    score    skipgan::anomaly_score reads x, x̂, f(x), f(x̂) once and writes score, R and L per image
    knn      with maps asked for and a knn memory: the patch distances of D's first level on x, read from its
             pyramid buffer, and of x's 4 x 4 pixel patches (skipgan/model/patch_knn.py)

No torch.cat, no separate BN or activation kernels, no reconstruction copies; buffers are allocated once (for
max_batch) and every batch uses prefixes of them. Two backends share this plan:

- "gemm" (CPU default): NHWC buffers, the layers of engine/layers.py (im2col / col2im GEMMs + native epilogues).
- "vendor" (CUDA default): channels_last buffers and `skipgan::conv_bn_act_out` per layer (cuDNN or oneDNN
  convolution + the native epilogue); on CUDA the whole pipeline is captured in one CUDA graph per batch size.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from .. import ops
from ..model.layer_names import by_part
from ..scoring import Scores
from .cpu import bf16_fast, bf16_restriction, int8_restriction
from .fold import FoldedNetwork, fold_for_scoring
from .layers import Col2imConvT, make_layer, nchw, needs_border
from .plan import Plan, network_specs, plan_mode
from .plan import choose as choose_plan

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# fp32 is true fp32 everywhere (the convolutions' precision is the engine's own argument to the native op, never the
# global torch.backends.cudnn.allow_tf32); "tf32" is the explicit opt-in: fp32 tensors, cuDNN's TF32 tensor cores
# for the convolutions (CUDA only; docs/gpu.md)
TF32 = "tf32"
# "int8": an int8 model file's quantised layers as oneDNN u8s8 products (engine/int8_layers.py), its activations
# in bf16 where this CPU has fast bf16, else fp32 (int8_activation_dtype)
INT8 = "int8"
PRECISIONS = (*DTYPES, TF32, INT8)
RELU, LEAKY, TANH, NONE = (ops.ACTIVATIONS[k] for k in ("relu", "leaky_relu", "tanh", "none"))
# Generator batch per tile on CPU, as a pixel budget: big enough for efficient GEMMs, small enough that a tile's
# activations stay in the caches (the eager model ran 88 img/s at 32 images per call, 53 at 64). Measured on
# the default model, 2-core Xeon: isize 32 best at 128 images (fp32 and bf16 alike, 64 and 256 slower);
# isize 128 bf16 24.4 img/s at 8 images vs 17.7 at 128 (fp32 flat within noise).
TILE_PIXELS = 128 * 32 * 32


def parse_precision(name: str) -> tuple[torch.dtype, bool]:
    """A precision's name (PRECISIONS) -> (the tensors' dtype, whether cuDNN may use TF32); ValueError otherwise."""
    if name == TF32:
        return torch.float32, True
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r}: expected one of {', '.join(PRECISIONS)}")
    return DTYPES[name], False


def int8_activation_dtype() -> torch.dtype:
    """The float dtype of the int8 engine's buffers and epilogues: bf16 where it is fast here, else fp32."""
    return torch.bfloat16 if bf16_fast() else torch.float32


def check_int8_supported(device: torch.device) -> None:
    if device.type != "cpu":
        raise ValueError("dtype=int8: the int8 engine runs on CPU (oneDNN u8s8 products); TensorRT int8 is not "
                         "built yet")
    why = int8_restriction()
    if why:
        raise ValueError(f"dtype=int8: {why}, so int8 would be no faster than fp32; score the fp32 model instead (an "
                         "int8 model file also scores with --engine eager, its slow reference)")


def check_dtype_supported(dtype: torch.dtype, device: torch.device, tf32: bool = False) -> None:
    """A clear error where the hardware has no fast path for the precision."""
    if tf32 and (dtype != torch.float32 or device.type != "cuda"):
        raise ValueError("dtype=tf32: TF32 is a CUDA precision for fp32 tensors (cuDNN's tensor cores); use fp32 "
                         "here" if device.type != "cuda" else "dtype=tf32: TF32 applies to fp32 tensors only")
    if device.type == "cpu":
        if dtype == torch.float16:
            raise ValueError("dtype=fp16: not supported on CPU (no fast fp16 matrix units); use fp32 or bf16")
        why = bf16_restriction() if dtype == torch.bfloat16 else None
        if why:
            raise ValueError(f"dtype=bf16: {why}, so bf16 would be slower than fp32; use fp32")
    elif device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError("dtype=bf16: this GPU does not support bf16; use fp16 or fp32")


def generator_rows(isize: int, probes: int, max_batch: int, tile: int | None = None,
                   device: torch.device = torch.device("cpu")) -> int:
    """Generator rows (images x max(K, 1)) of one full tile: whole images, at most `tile` rows (default: the CPU's
    TILE_PIXELS budget; CUDA: the whole batch, one graph) and at most max_batch images."""
    per_image = max(1, probes)
    if not tile:
        tile = max(1, TILE_PIXELS // (isize * isize)) if device.type == "cpu" else max_batch * per_image
    return max(1, min(max_batch, tile // per_image)) * per_image


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    before = torch.get_num_threads()
    if not n or n == before:  # (setting the thread count costs ~0.1 ms a call: a tenth of a one-image call)
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class _Buffers:
    """Everything the hot path writes, allocated once."""

    d_in: torch.Tensor  # discriminator input [2·max_batch, S+2b, S+2b, nc] (x then x̂), zero border
    g_in: torch.Tensor | None  # generator input (probed x), zero border; None without probes (g reads x)
    enc: list[torch.Tensor]  # input buffer of encoder level j+1 (LeakyReLU(y_j)), zero border where needed
    cat: list[torch.Tensor]  # decoder concatenation buffers [T, s, s, 2w]
    inner: torch.Tensor  # ReLU(y_innermost)
    pyr: list[torch.Tensor]  # discriminator pyramid outputs
    feat: torch.Tensor  # [2·max_batch, nz]
    cols: torch.Tensor  # im2col / GEMM columns scratch
    y: torch.Tensor  # GEMM output scratch
    scores: torch.Tensor  # [max_batch] fp32
    parts: torch.Tensor  # [max_batch, 2] fp32: R and L


class Screener:
    """Fused inference for one trained model on one device, dtype and maximum batch size."""

    def __init__(self, net: FoldedNetwork, probes: tuple[torch.Tensor, torch.Tensor, torch.Tensor], *,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, max_batch: int = 64,
                 threads: int | None = None, backend: str | None = None, tile: int | None = None,
                 cuda_graphs: bool = True, knn=None, plan: str | dict | None = None, tf32: bool = False,
                 int8: bool = False):
        """tf32: let cuDNN run the fp32 convolutions on TF32 tensor cores (CUDA only; default: true fp32).
        int8: run the quantised layers of `net` (fold.Int8Conv, from an int8 model) as u8s8 products, in the forms
        the plan picks for them; `dtype` is then the activations' (int8_activation_dtype for the fastest)."""
        if not ops.AVAILABLE:
            raise RuntimeError(f"the fused engine needs the native ops: {ops.build_info().get('error')}")
        self.device = torch.device(device)
        check_dtype_supported(dtype, self.device, tf32)
        self.int8 = bool(int8)
        if self.int8:
            check_int8_supported(self.device)
            if not any(l.int8 is not None for l in [*net.encoder, *net.decoder, *net.pyramid, net.feature]):
                raise ValueError("dtype=int8: the network has no quantised layers (fold an int8 model with "
                                 "fold_for_scoring(model, int8=True))")
            if backend not in (None, "gemm"):
                raise ValueError("dtype=int8: runs on the gemm backend only")
        self.tf32 = bool(tf32)
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: must be at least 1")
        self.net, self.dtype, self.max_batch, self.threads = net, dtype, int(max_batch), threads
        self.knn = knn  # PatchKnn or None
        self.backend = backend or ("gemm" if self.device.type == "cpu" else "vendor")
        if self.backend not in ("gemm", "vendor"):
            raise ValueError(f"backend={self.backend!r}: expected 'gemm' or 'vendor'")
        if self.backend == "gemm" and self.device.type != "cpu":
            raise ValueError("backend='gemm' runs on CPU only; use backend='vendor' on CUDA")
        self.isize, self.nc = net.isize, net.nc
        scale, shift, weight = probes
        self.K = weight.shape[0]
        # Probe tensors in the buffers' layout (NHWC for gemm, NCHW for vendor).
        to = dict(device=self.device, dtype=dtype)
        if self.backend == "gemm":
            self.p_scale = scale.permute(0, 2, 3, 1).to(**to).contiguous()
            self.p_shift = shift.permute(0, 2, 3, 1).to(**to).contiguous()
        else:
            self.p_scale, self.p_shift = scale.to(**to), shift.to(**to)
        self.p_weight = weight.to(self.device, torch.float32).contiguous()
        self.T = generator_rows(self.isize, self.K, self.max_batch, tile, self.device)  # generator batch of a tile
        self.tile_images = self.T // max(1, self.K)  # images per generator tile
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        # CPU: each batch size's pipeline as recorded steps (op, views of the buffers): replayed without rebuilding
        # the ~300 views per call that cost a one-image call ~10 % (the CPU's counterpart of the CUDA graphs)
        self._steps: dict[int, list] = {}
        self._recording: list | None = None
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self.plan_mode = plan_mode(plan)  # checked before any work
        self.plan: Plan | None = None  # the gemm backend's layer plan (engine/plan.py), set by _build
        self._build()

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model, *, device=None, dtype: torch.dtype | str = torch.float32, max_batch: int = 64,
                   probes: int | None = None, threads: int | None = None, **kw) -> "Screener":
        """Fold a trained SkipGANomaly (BN folded once, weights converted once) into a screener.

        probes: use the first K of the model's stored scoring probes, reweighted (None: all; 0: clean input).
        dtype: a torch dtype or a name of PRECISIONS ("tf32": fp32 tensors, TF32 convolutions on CUDA; "int8": the
        int8 model's quantised layers as int8 products, activations in int8_activation_dtype()).
        """
        if dtype == INT8:
            kw["int8"], dtype = True, int8_activation_dtype()
        if isinstance(dtype, str):
            dtype, tf32 = parse_precision(dtype)
            kw["tf32"] = kw.get("tf32", False) or tf32
        device = torch.device(device) if device is not None else next(model.parameters()).device
        net, chosen = fold_for_scoring(model, probes, kw.get("int8", False))  # the model is left where it is
        kw.setdefault("knn", model.knn)
        return cls(net, chosen, device=device, dtype=dtype, max_batch=max_batch, threads=threads, **kw)

    def _build(self) -> None:
        net, S, nc, T, B2 = self.net, self.isize, self.nc, self.T, 2 * self.max_batch
        gemm = self.backend == "gemm"
        dev, dt = self.device, self.dtype
        sizes = [S >> j for j in range(len(net.encoder) + 1)]  # input size of encoder level j
        if gemm:
            specs = network_specs(net, T, B2)
            self._specs = specs  # the layers as the plan names them
            # (an int8 model's quantised layers are measured in their int8 forms, the layers kept in fp32 in theirs)
            with intra_op_threads(self.threads):  # measured with the threads it will run with
                self.plan, built = choose_plan(specs, dt, dev, self.plan_mode, threads=self.threads)
            layers = {s.name: built.get(s.name) or make_layer(s.layer, s.size, s.rows, dt, dev,
                                                              *self.plan.choices[s.name], fold=s.fold)
                      for s in specs}
            self.enc, self.dec, self.pyr, self.feat = by_part(layers)
            assert isinstance(self.dec[0], Col2imConvT), "the last generator layer must be a fold (probe mixing)"
        else:
            self.enc, self.dec = net.encoder, net.decoder
            self.pyr, self.feat = net.pyramid, net.feature
            # weights in the layout the convolutions use (the activations are channels_last): cuDNN would otherwise
            # reorder every weight on every call
            self._vendor_weights = {id(l): (l.weight.to(dev, dt).contiguous(memory_format=torch.channels_last),
                                            None if l.shift is None else l.shift.to(dev))
                                    for l in [*net.encoder, *net.decoder, *net.pyramid, net.feature]}

        def buf(n, size, c, border=0):
            """NHWC for gemm (border = zero padding im2col reads), channels_last NCHW-logical for vendor."""
            if gemm:
                return torch.zeros(n, size + 2 * border, size + 2 * border, c, device=dev, dtype=dt)
            return torch.zeros(n, c, size, size, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)

        border = (lambda layer: needs_border(layer)) if gemm else (lambda layer: 0)
        widths = [l.c_out for l in net.encoder]
        d_in = buf(B2, S, nc, border(self.pyr[0]))
        g_in = buf(T, S, nc, border(self.enc[0])) if self.K else None
        enc = [buf(T, sizes[j + 1], widths[j], border(self.enc[j + 1])) for j in range(len(widths) - 1)]
        cat = [buf(T, sizes[j + 1], 2 * widths[j]) for j in range(len(widths) - 1)]
        inner = buf(T, sizes[-1], widths[-1])
        dsz = [S >> (i + 1) for i in range(len(net.pyramid))]
        pyr = [buf(B2, dsz[i], l.c_out, border(self.pyr[i + 1]) if i + 1 < len(self.pyr) else 0)
               for i, l in enumerate(net.pyramid)]
        feat = torch.zeros(B2, net.feature.c_out, device=dev, dtype=dt)
        cols_n = y_n = 0
        if gemm:
            for layer, n in [*((l, T) for l in (*self.enc, *self.dec)), *((l, B2) for l in (*self.pyr, self.feat))]:
                c, y = layer.scratch(n)
                cols_n, y_n = max(cols_n, c), max(y_n, y)
        self.b = _Buffers(d_in, g_in, enc, cat, inner, pyr, feat,
                          torch.empty(cols_n, device=dev, dtype=dt), torch.empty(y_n, device=dev, dtype=dt),
                          torch.zeros(self.max_batch, device=dev), torch.zeros(self.max_batch, 2, device=dev))

    # ------------------------------------------------------------------------------------------ views
    def _img(self, t: torch.Tensor) -> torch.Tensor:
        """NCHW-logical view of a buffer without border: NHWC (gemm) or channels_last (vendor)."""
        return nchw(t) if self.backend == "gemm" else t

    def _bordered_interior(self, t: torch.Tensor, size: int) -> torch.Tensor:
        pad = (t.shape[1] - size) // 2
        return nchw(t[:, pad : pad + size, pad : pad + size, :]) if self.backend == "gemm" else t

    # ------------------------------------------------------------------------------------------ the pipeline
    def _do(self, fn, *args, **kw) -> None:
        """One step of the pipeline (every op of the gemm backend's path goes through here); while recording, kept
        with its arguments for replay."""
        if self._recording is not None:
            self._recording.append((fn, args, kw))
        fn(*args, **kw)

    def _run(self, n: int, error_map: torch.Tensor | None) -> None:
        """Score the n images already in d_in[:n] (x); x̂ goes to d_in[n:2n]. CPU without an error map: the steps
        recorded at this batch size's first call, replayed (every step writes preallocated buffers)."""
        if self.backend != "gemm" or error_map is not None:
            return self._run_steps(n, error_map)
        steps = self._steps.get(n)
        if steps is None:
            self._recording = []
            try:
                self._run_steps(n, None)
                self._steps[n] = self._recording
            finally:
                self._recording = None
            return
        for fn, args, kw in steps:
            fn(*args, **kw)

    def _run_steps(self, n: int, error_map: torch.Tensor | None) -> None:
        tb = self.tile_images
        for i0 in range(0, n, tb):
            i1 = min(n, i0 + tb)
            self._generator(i0, i1, n)
        self._discriminator(2 * n)
        b, S = self.b, self.isize
        x = self._bordered_interior(b.d_in[:n], S)
        xh = self._bordered_interior(b.d_in[n : 2 * n], S)
        self._do(torch.ops.skipgan.anomaly_score_out, x, xh, b.feat[:n], b.feat[n : 2 * n], self.net.lam,
                 b.scores[:n], error_map, self.net.margin, b.parts[:n])

    def _generator(self, i0: int, i1: int, n: int) -> None:
        """Reconstruct images i0..i1 of the batch into d_in[n + i0 : n + i1]."""
        b, S, K, m = self.b, self.isize, self.K, i1 - i0
        net, slope = self.net, self.net.slope
        x = self._bordered_interior(b.d_in[i0:i1], S)
        if K:
            rows = K * m
            g_buf = b.g_in[:rows]
            g = self._bordered_interior(g_buf, S)
            if self.backend == "gemm":  # NHWC: [K, m, S, S, nc] = x[None] * scale[:, None] + shift[:, None]
                self._do(torch.addcmul, self.p_shift[:, None], x.permute(0, 2, 3, 1)[None], self.p_scale[:, None],
                         out=g.permute(0, 2, 3, 1).unflatten(0, (K, m)))
            else:
                torch.addcmul(self.p_shift[:, None], x[None], self.p_scale[:, None], out=g.unflatten(0, (K, m)))
        else:
            rows, g_buf = m, b.d_in[i0:i1]
        n_enc = len(net.encoder)
        src = g_buf
        for j in range(n_enc):
            inner = j == n_enc - 1
            if inner:  # innermost: only the decoder reads it, as ReLU(y)
                self._layer(self.enc[j], src, RELU, slope, self._img(b.inner[:rows]))
            else:
                nxt = b.enc[j][:rows]
                w = net.encoder[j].c_out
                out = self._bordered_interior(nxt, S >> (j + 1))
                self._layer(self.enc[j], src, LEAKY, slope, out, RELU, self._img(b.cat[j][:rows])[:, :w])
                src = nxt
        src = b.inner[:rows]
        for j in range(n_enc - 1, 0, -1):
            w = net.encoder[j - 1].c_out
            self._layer(self.dec[j], src, RELU, slope, self._img(b.cat[j - 1][:rows])[:, w:])
            src = b.cat[j - 1][:rows]
        xh = self._bordered_interior(b.d_in[n + i0 : n + i1], S)
        self._last_layer(src, xh, rows, m)

    def _last_layer(self, src: torch.Tensor, xh: torch.Tensor, rows: int, m: int) -> None:
        K, slope = self.K, self.net.slope
        if self.backend == "gemm":
            self._do(self.dec[0], src, self.b.cols, self.b.y, TANH, slope, xh, 0, None, self.p_weight if K else None)
            return
        if not K:
            self._layer(self.dec[0], src, TANH, slope, xh)
            return
        rec = torch.empty(rows, self.nc, self.isize, self.isize, device=self.device, dtype=self.dtype)
        self._layer(self.dec[0], src, TANH, slope, rec)
        # each probe reconstruction read once: x̂ = Σ_k w_k · rec_k
        torch.sum(rec.unflatten(0, (K, m)) * self.p_weight[:, None].to(self.dtype), 0, out=xh)

    def _discriminator(self, n2: int) -> None:
        b, slope = self.b, self.net.slope
        src = b.d_in[:n2]
        for i, layer in enumerate(self.pyr):
            dst = b.pyr[i][:n2]
            size = self.isize >> (i + 1)
            self._layer(layer, src, LEAKY, slope, self._bordered_interior(dst, size))
            src = dst
        f = b.feat[:n2]
        self._layer(self.feat, src, NONE, slope, f.view(n2, -1, 1, 1) if self.backend != "gemm" else f.view(n2, 1, 1, -1).permute(0, 3, 1, 2))

    def _layer(self, layer, src, act, slope, out, act2=0, out2=None) -> None:
        if self.backend == "gemm":
            self._do(layer, src, self.b.cols, self.b.y, act, slope, out, act2, out2)
            return
        w, shift = self._vendor_weights[id(layer)]
        torch.ops.skipgan.conv_bn_act_out(src, w, None, shift, [layer.stride] * 2, [layer.padding] * 2,
                                          layer.transposed, act, slope, out, act2, out2, self.tf32)

    # ------------------------------------------------------------------------------------------ public API
    def check_input(self, x: torch.Tensor) -> None:
        want = f"[B, {self.nc}, {self.isize}, {self.isize}]"
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (self.nc, self.isize, self.isize):
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"input: expected a float tensor {want} (images preprocessed to [-1, 1]), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"input: expected a float tensor {want} in [-1, 1], got dtype {x.dtype} "
                             "(decode and normalise with skipgan.data.images first)")

    @torch.no_grad()
    def score(self, x: torch.Tensor, *, error_map: bool = False, reconstruction: bool = False) -> Scores:
        """Scores of a batch [B, C, isize, isize] in [-1, 1] (any B; chunks of max_batch). Results on x's device
        for score / pixel / feature (fp32); a non-finite score means the image could not be scored."""
        self.check_input(x)
        parts = []
        with intra_op_threads(self.threads):
            for i in range(0, x.shape[0], self.max_batch):
                parts.append(self._score_batch(x[i : i + self.max_batch], error_map, reconstruction))
        res = Scores.cat(parts)
        return res if x.device == self.device else res.to(x.device)

    def _score_batch(self, x: torch.Tensor, want_map: bool, want_rec: bool) -> Scores:
        n, b, S = x.shape[0], self.b, self.isize
        self._bordered_interior(b.d_in[:n], S).copy_(x)
        emap = torch.empty(n, S, S, device=self.device) if want_map else None
        if self.cuda_graphs and not want_map:
            self._replay(n)
        else:
            self._run(n, emap)
        rec = self._bordered_interior(b.d_in[n : 2 * n], S).float().clone(memory_format=torch.contiguous_format) \
            if want_rec else None  # a copy: the buffer is reused by the next batch
        # rows 0..n of D's first level (x's activations) and the engine's own copy of x: both on the engine's device,
        # wherever the caller's x lives
        kmap = self.knn.raw_maps(self._bordered_interior(b.pyr[0][:n], S // 2), S,
                                 self._bordered_interior(b.d_in[:n], S)) \
            if want_map and self.knn is not None else None
        return Scores(b.scores[:n].clone(), b.parts[:n, 0].clone(), b.parts[:n, 1].clone(), rec, emap, kmap)

    def _replay(self, n: int) -> None:
        """CUDA: capture the pipeline for batch size n once, then replay it (inputs already in d_in)."""
        if n not in self._graphs:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm up: cuDNN picks its algorithms outside the capture
                    self._run(n, None)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._run(n, None)
            self._graphs[n] = graph
        self._graphs[n].replay()

    def __repr__(self) -> str:
        plan = self.plan.mode if self.plan else self.plan_mode
        precision = f"{self.dtype}{' (tf32)' if self.tf32 else ''}{' (int8 products)' if self.int8 else ''}"
        return (f"Screener(isize={self.isize}, nc={self.nc}, probes={self.K}, device={self.device}, "
                f"dtype={precision}, backend={self.backend}, max_batch={self.max_batch}, "
                f"tile={self.tile_images} images, plan={plan})")
