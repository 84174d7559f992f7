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
``--stride``-th row); the search multiplies one parameter at a time by a few factors
and keeps what helps, for ``--rounds`` rounds. It prints the fitted values to paste
into ``TUNINGS``.

    python3 scripts/calibrate_comm.py [--group ampere/nvswitch] [--stride 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from des.comm import nccl
from des.validate.collectives import validate_collectives
from topologies import load_system

GROUPS = {
    "ampere/nvlink": (("ampere", "nvlink"), {"a100x4_nvlink"}, ("call_overhead_s", "link_fraction", "ll_fraction", "ll128_fraction", "simple_fraction")),
    "ampere/nvswitch": (("ampere", "nvswitch"), {"dgx_a100_2r_2pn", "dgx_a100_4r_4pn"}, ("call_overhead_s", "link_fraction", "ll_fraction", "ll128_fraction", "simple_fraction")),
    "hopper/nvswitch": (("hopper", "nvswitch"), {"dgx_h100_2r_2pn", "dgx_h100_4r_4pn"}, ("call_overhead_s", "link_fraction", "ll_fraction", "ll128_fraction", "simple_fraction")),
    "ampere/net": (("ampere", "nvswitch"), {"dgx_a100_2r_1pn"}, ("net_fraction",)),
}
FACTORS = (0.6, 0.8, 1.25, 1.6)
BOUNDS = {"link_fraction": 1.0, "net_fraction": 1.0}


def score(key, tuning, datasets, stride) -> float:
    nccl.TUNINGS[key] = tuning
    report = validate_collectives(load_system, stride=stride, datasets=datasets)
    return report.mape()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", choices=sorted(GROUPS), action="append")
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in args.group or sorted(GROUPS):
        key, datasets, names = GROUPS[name]
        best = nccl.TUNINGS[key]
        best_score = score(key, best, datasets, args.stride)
        print(f"{name}: start {best_score * 100:.2f} %", file=sys.stderr)
        for _round in range(args.rounds):
            for field in names:
                for factor in FACTORS:
                    value = getattr(best, field) * factor
                    value = min(value, BOUNDS.get(field, value))
                    trial = dataclasses.replace(best, **{field: value})
                    trial_score = score(key, trial, datasets, args.stride)
                    if trial_score < best_score - 1e-6:
                        best, best_score = trial, trial_score
                        print(f"  {field} = {value:.4g}: {best_score * 100:.2f} %", file=sys.stderr)
        nccl.TUNINGS[key] = best
        print(f"{name}: {best_score * 100:.2f} %  {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
