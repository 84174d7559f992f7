"""Event-simulated collectives over the network, and their closed forms."""

from des.collectives.closed_form import ring_bandwidth_bound_s, ring_time_s
from des.collectives.ring import KINDS, CollectiveResult, RingCollective
from des.collectives.rings import ring_orders

__all__ = ["KINDS", "CollectiveResult", "RingCollective", "ring_bandwidth_bound_s", "ring_orders", "ring_time_s"]
