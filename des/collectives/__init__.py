"""Event-simulated collectives over the network, and their closed forms."""

from des.collectives.closed_form import (
    choose_protocol,
    hierarchical_time_s,
    pipelined_ring_time_s,
    ring_bandwidth_bound_s,
    ring_time_s,
)
from des.collectives.hierarchical import HierarchicalCollective, choose_algorithm, make_collective
from des.collectives.ring import KINDS, CollectiveResult, RingCollective, buffer_bytes
from des.collectives.rings import ring_orders

__all__ = [
    "KINDS",
    "CollectiveResult",
    "HierarchicalCollective",
    "RingCollective",
    "buffer_bytes",
    "choose_algorithm",
    "choose_protocol",
    "hierarchical_time_s",
    "make_collective",
    "pipelined_ring_time_s",
    "ring_bandwidth_bound_s",
    "ring_orders",
    "ring_time_s",
]
