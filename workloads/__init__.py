"""Transformer workloads: model descriptions and the task graphs of their inference.

:func:`load_model` reads a model preset (``workloads/models/*.yaml``) or a model YAML
file into a :class:`ModelSpec`; :func:`build_workload` turns it, an architecture
(``standard`` Megatron TP, GPT-J ``parallel`` attention + FFN, ``kraken``) and a phase
(``prefill``, ``decode``) into a :class:`des.taskgraph.TaskGraph` over the TP devices,
with its per-device :class:`MemoryEstimate` and closed-form FLOP and byte counts.
:class:`KrakenRule` states how a Kraken model's sub-layer width is derived. This
package imports des's specs, operators and task graph, never its engine.
"""

from workloads.kraken_rule import KrakenRule, kraken_params, layer_params, standard_params
from workloads.model import (
    MODEL_DIR,
    KrakenConfig,
    ModelSpec,
    load_model,
    model_from_mapping,
    model_names,
)

__all__ = [
    "MODEL_DIR",
    "KrakenConfig",
    "KrakenRule",
    "ModelSpec",
    "kraken_params",
    "layer_params",
    "load_model",
    "model_from_mapping",
    "model_names",
    "standard_params",
]
