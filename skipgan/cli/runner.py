"""How a command runs: its exit codes, one line for every user error, and the torchrun conventions (run_command).

    0    done                      1    some inputs failed (images not scored) or a peer process died
    2    usage, data or model error (one line `skipgan: error: ...`, no traceback)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import os
import sys

from ..distributed import BACKENDS, DEFAULT_TIMEOUT_S, PeerFailure, launched, session
from ..errors import InputError
from .flags import resolve_device

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def call(fn, a) -> int:
    """fn(a), the command: every user-fixable problem ends as one line on stderr and EXIT_USAGE."""
    try:
        return fn(a)
    except InputError as e:
        print(f"skipgan: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("skipgan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def add_dist_flags(p) -> None:
    g = p.add_argument_group("torchrun (used only when started by torchrun with more than one process)")
    g.add_argument("--dist-backend", choices=BACKENDS, default="auto",
                   help="process-group backend: auto = nccl on CUDA, gloo on CPU (default: auto)")
    g.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="how long a collective waits for the other processes before the job fails "
                        f"(default: {DEFAULT_TIMEOUT_S:g})")


def run_command(fn, a) -> int:
    """Run a CLI command `fn(a, dist, device)` inside `session()`, with the torchrun conventions: a failed peer ends
    with one line and exit code 1; a user error (exit code 2) is printed by rank 0, which meets every error the
    processes of its node meet (same flags, same files), and by the first process of every other node (files
    there may differ), never by N processes at once. Errors met by one process alone are gathered to rank 0 by
    the command itself (`skipgan score`)."""
    rank = int(os.environ.get("RANK", "0")) if launched() else 0
    try:
        device = resolve_device(a.device)
        with session(device, a.dist_backend, a.dist_timeout) as (d, dev):
            return fn(a, d, dev)
    except PeerFailure as e:
        print(f"skipgan: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except InputError as e:
        if rank == 0:
            raise
        if os.environ.get("LOCAL_RANK") == "0":
            print(f"skipgan: error (rank {rank}, node {os.environ.get('GROUP_RANK', '?')}): {e}", file=sys.stderr)
        return EXIT_USAGE
