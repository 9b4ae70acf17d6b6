"""The model's own image score and its anomaly map inside an exported graph (skipgan.export.pipeline's head).

    mean   the paper's score (the pipeline computes it already); the map, when asked for, is the error map's
    max    the error map -> smoothed -> (s − μ) / σ -> the interior's largest value
    topk   the same map -> the mean of its topk_count largest interior values
    knn    the knn map (skipgan.model.patch_knn.KnnMap on D's first level and the images, its memories carried in
           the file as buffers) -> smoothed -> (s − μ_knn) / σ_knn -> the interior's largest value

Every step is the one definition the engine's path calls (skipgan.anomaly_map.smooth_with, aggregate_maps;
KnnMap, which PatchKnn.raw_maps runs), with the smoothing's kernel and border indices precomputed for the model's
isize: graphs hold them as constants. The map is at isize × isize in σ units, as `skipgan score` computes it before
upsampling to an image's own size.
"""

from typing import Final, Optional

import torch
from torch import nn

from ..anomaly_map import (AGGREGATIONS, MAP_OF, PAPER_AGGREGATION, MapSettings, aggregate_maps, gaussian_kernel,
                           reflect_index, smooth_with, topk_count)
from ..model.patch_knn import QUERY_BLOCK, KnnMap, PatchKnn


class MapHead(nn.Module):
    """The anomaly map of the aggregation's kind and the image score read from it."""

    paper: Final[bool]
    reads_knn: Final[bool]
    smoothing: Final[bool]
    margin: Final[int]
    k: Final[int]
    mean: Final[float]
    std: Final[float]

    def __init__(self, how: str, settings: MapSettings, isize: int, knn: Optional[PatchKnn],
                 query_block: int = QUERY_BLOCK):
        """how: the aggregation (skipgan.anomaly_map.AGGREGATIONS); settings: the model's calibrated map settings;
        knn: the model's memory (needed by 'knn' only); query_block: KnnMap's (0 for torch.export and ONNX, whose
        query count is symbolic)."""
        super().__init__()
        if how not in AGGREGATIONS:
            raise ValueError(f"aggregation={how!r}: expected one of {', '.join(AGGREGATIONS)}")
        kind = MAP_OF[how]
        st = settings.for_map(kind)
        self.paper, self.reads_knn = how == PAPER_AGGREGATION, kind == "knn"
        if self.reads_knn and knn is None:
            raise ValueError("aggregation='knn': the model has no knn memory")
        self.knn = KnnMap(knn, query_block) if self.reads_knn else None
        self.smoothing, self.margin = st.sigma > 0, st.margin
        self.k = topk_count(isize, isize, st.margin, st.topk_percent) if how == "topk" else 0
        self.mean, self.std = float(st.mean), float(st.std)
        kernel = gaussian_kernel(st.sigma).float() if self.smoothing else torch.ones(1)
        r = (kernel.numel() - 1) // 2
        self.register_buffer("kernel", kernel)
        self.register_buffer("border", reflect_index(isize, r))

    def anomaly_map(self, error_map: torch.Tensor, level0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """[B, isize, isize] fp32 in σ units: the error map's (error_map: [B, isize, isize]) or the knn map's
        (level0: D's first level on x; x: the network input)."""
        if self.knn is not None:
            raw = self.knn(level0, x)
        else:
            raw = error_map
        if self.smoothing:
            raw = smooth_with(raw, self.kernel, self.border, self.border)
        return (raw - self.mean) / self.std

    def score(self, amap: torch.Tensor) -> torch.Tensor:
        """The image scores [B] fp32 that 'max', 'topk' and 'knn' read from the anomaly map."""
        return aggregate_maps(amap, self.margin, self.k)

