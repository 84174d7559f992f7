"""Fit what NCCL's kernels achieve against NCCL's own model, once per GPU generation and interconnect.

The structure - which algorithm, protocol and channels NCCL runs, its latencies per
hop - is NCCL's (des/comm/nccl.py). What remains is fitted here on the measurements in
../shared/calibration only, each group of parameters on the rows of its own GPU
generation and interconnect, all of that group's tables together:

- ampere / nvlink (direct links): a100x4_nvlink_allreduce.csv (HGX A100 4-GPU);
- ampere / nvswitch: dgx_allreduce.csv, A100, 2 and 4 ranks in one DGX;
- hopper / nvswitch: dgx_allreduce.csv, H100, 2 and 4 ranks in one DGX;
- ampere net_fraction: dgx_allreduce.csv, A100, 2 ranks on 2 machines (with the
  ampere / nvswitch fit held).

The score is the mean absolute relative error of the event simulation (every
``--stride``-th row); the search multiplies one parameter at a time by a factor, keeps
what helps and repeats until nothing does, then again with finer factors (x2, x1.4,
x1.25, x1.1). Bounds keep every parameter physical: link and network fractions at most
1, latency multiples between 0.5 and 4 (NVLS's between 0.2 and 4: its one 25 us figure
is NCCL's whole-call estimate). A parameter that ends on a bound is named. It prints
the fitted values to paste into ``TUNINGS``.

    python3 scripts/calibrate_comm.py [--group ampere/nvswitch] [--stride 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from des.comm import nccl
from des.validate.collectives import validate_collectives
from topologies import load_system

#: Fitted per (generation, interconnect): the harness's call overhead, the link fraction,
#: and per protocol the achieved fraction of NCCL's bandwidth and multiple of its latency.
_FIELDS = ("call_overhead_s", "link_fraction", "ll_fraction", "ll128_fraction", "simple_fraction",
           "ll_latency", "ll128_latency", "simple_latency")
GROUPS = {
    "ampere/nvlink": (("ampere", "nvlink"), {"a100x4_nvlink"}, _FIELDS),
    "ampere/nvswitch": (("ampere", "nvswitch"), {"dgx_a100_2r_2pn", "dgx_a100_4r_4pn"}, _FIELDS),
    "hopper/nvswitch": (("hopper", "nvswitch"), {"dgx_h100_2r_2pn", "dgx_h100_4r_4pn"}, (*_FIELDS, "nvls_latency")),
    "ampere/net": (("ampere", "nvswitch"), {"dgx_a100_2r_1pn"}, ("net_fraction", "net_latency")),
}
#: Factor rounds, coarse to fine; each round repeats until no factor helps.
ROUNDS = ((0.5, 2.0), (0.7, 1.4), (0.8, 1.25), (0.9, 1.1))
#: (least, greatest) value per parameter; others are only kept positive.
BOUNDS = {
    "link_fraction": (0.05, 1.0),
    "net_fraction": (0.05, 1.0),
    "ll_latency": (0.5, 4.0),
    "ll128_latency": (0.5, 4.0),
    "simple_latency": (0.5, 4.0),
    "nvls_latency": (0.2, 4.0),
    "net_latency": (0.5, 4.0),
}


def bounded(field: str, value: float) -> float:
    """``value`` held inside ``field``'s bounds."""
    low, high = BOUNDS.get(field, (0.0, float("inf")))
    return min(max(value, low), high)


def score(key, tuning, datasets, stride) -> float:
    nccl.TUNINGS[key] = tuning
    report = validate_collectives(load_system, stride=stride, datasets=datasets)
    return report.mape()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", choices=sorted(GROUPS), action="append")
    parser.add_argument("--stride", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in args.group or sorted(GROUPS):
        key, datasets, names = GROUPS[name]
        best = nccl.TUNINGS[key]
        best_score = score(key, best, datasets, args.stride)
        print(f"{name}: start {best_score * 100:.2f} %", file=sys.stderr)
        for factors in ROUNDS:
            improved = True
            while improved:
                improved = False
                for field in names:
                    for factor in factors:
                        value = bounded(field, getattr(best, field) * factor)
                        if value == getattr(best, field):
                            continue
                        trial = dataclasses.replace(best, **{field: value})
                        trial_score = score(key, trial, datasets, args.stride)
                        if trial_score < best_score - 1e-5:
                            best, best_score, improved = trial, trial_score, True
                            print(f"  {field} = {value:.4g}: {best_score * 100:.2f} %", file=sys.stderr)
        nccl.TUNINGS[key] = best
        print(f"{name}: {best_score * 100:.2f} %  {best}")
        for field in names:
            if field in BOUNDS and getattr(best, field) in BOUNDS[field]:
                print(f"  warning: {field} = {getattr(best, field):.4g} sits on its bound", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
