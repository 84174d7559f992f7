"""Transformer workloads: model descriptions and the task graphs of their inference.

:func:`load_model` reads a model preset (``workloads/models/*.yaml``) or a model YAML
file into a :class:`ModelSpec`; :func:`build_workload` turns it, an architecture
(``standard`` Megatron TP, GPT-J ``parallel`` attention + FFN, ``kraken``) and a phase
(``prefill``, ``decode``) into a :class:`des.taskgraph.TaskGraph` over the TP devices,
with its per-device :class:`MemoryEstimate` and closed-form FLOP and byte counts.
:class:`KrakenRule` states how a Kraken model's sub-layer width is derived. This
package imports des's specs, operators and task graph, never its engine.
"""

from workloads.counts import closed_form_counts
from workloads.kraken_rule import KrakenRule, kraken_params, standard_params
from workloads.memory import MemoryEstimate, check_memory, estimate_memory
from workloads.model import (
    MODEL_DIR,
    KrakenConfig,
    ModelSpec,
    load_model,
    model_from_mapping,
    model_names,
    model_path,
)
from workloads.shapes import ATTENTIONS, PHASES, Shapes
from workloads.transformer import ARCHS, Workload, build_workload

__all__ = [
    "ARCHS",
    "ATTENTIONS",
    "MODEL_DIR",
    "PHASES",
    "KrakenConfig",
    "KrakenRule",
    "MemoryEstimate",
    "ModelSpec",
    "Shapes",
    "Workload",
    "build_workload",
    "check_memory",
    "closed_form_counts",
    "estimate_memory",
    "kraken_params",
    "load_model",
    "model_from_mapping",
    "model_names",
    "model_path",
    "standard_params",
]
