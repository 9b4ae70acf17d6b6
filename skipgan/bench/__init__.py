"""Side-by-side scoring throughput: the fused engine against the usual ways of running the same model.

Every runtime ("peer") scores the SAME SkipGANomaly, with the same scoring probes, on the same input; the
runtimes are built once per (runtime, batch, isize, K), checked against the eager fp32 scores, then timed
round-robin (a little of each in turn, several rounds) so that load drift on a shared machine hits them alike.
The machine's limits (read bandwidth, fp32 / bf16 matmul FLOP/s) are measured in the same run and turned into
the model's bounds: compute-bound images/s from its FLOPs per image, and the weight-streaming bound at batch 1.

    model.py        the model every runtime scores (random weights or a model file, K probes) and its input
    flops.py        FLOPs and weights per image, the bounds on a measured machine
    machine.py      timing helpers, the machine's limits, what the numbers were measured on
    peers.py        the registry of runtimes (torch_peers.py, onnx_peers.py: their factories; peer_tools.py)
    run.py          build, check against eager fp32, time round-robin: one row per (config, runtime)
    table.py        the printed table

Used by `skipgan bench` (skipgan/cli/bench.py) and by the pytest-benchmark suite benchmarks/bench_engine.py.
No pytest here. The networks' weights are random (DCGAN initialisation, BN statistics randomised) unless a
trained model is given: speed does not depend on training.

    from skipgan import bench
    rows = bench.run([(64, 32, 8)], runtimes=["eager", "engine_fp32"], min_time=2.0)
    print(bench.format_table(rows))
"""

from .flops import (conv_macs, discriminator_macs, flops_per_image, generator_macs, limit_img_s, model_bounds,
                    weight_count)
from .machine import (bf16_supported, cpu_model, interleaved_rates, machine_info, measure_machine, median_time,
                      sync)
from .model import (SPEED_NOTE, Config, default_configs, load_trained, make_input, make_model, num_probes,
                    reference_scores, with_probes)
from .onnx_peers import clear_exports, onnx_file
from .peer_tools import ScoreOnly, one_line
from .peers import PEERS, RUNTIMES, Peer
from .run import TOLERANCE, Built, build_peer, max_rel_err, run
from .table import format_machine, format_table

__all__ = ["PEERS", "RUNTIMES", "SPEED_NOTE", "TOLERANCE", "Built", "Config", "Peer", "ScoreOnly", "bf16_supported",
           "build_peer", "clear_exports", "conv_macs", "cpu_model", "default_configs", "discriminator_macs",
           "flops_per_image", "format_machine", "format_table", "generator_macs", "interleaved_rates", "limit_img_s",
           "load_trained", "machine_info", "make_input", "make_model", "max_rel_err", "measure_machine", "median_time",
           "model_bounds", "num_probes", "one_line", "onnx_file", "reference_scores", "run", "sync", "weight_count",
           "with_probes"]
