"""SimPy resources: compute units, shared DRAM bandwidth, links, devices and the network."""

from des.hardware.bandwidth import SharedBandwidth
from des.hardware.compute import ComputePool
from des.hardware.device import Device
from des.hardware.link import Link, send
from des.hardware.network import Network

__all__ = ["ComputePool", "Device", "Link", "Network", "SharedBandwidth", "send"]
