"""The communication-library layer: how NCCL and the inference engines run each call.

See :mod:`des.comm.plan` (the layer), :mod:`des.comm.nccl` (NCCL's choice),
:mod:`des.comm.engines` (TensorRT-LLM's and vLLM's all-reduce) and
:mod:`des.comm.facts` (what a library sees of a group).
"""

from des.comm.plan import CommPlan, build, check_library, plan_call

__all__ = ["CommPlan", "build", "check_library", "plan_call"]
