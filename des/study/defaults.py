"""The defaults of a study point: the main job, GPT-3 13B prefill of 2048 tokens at TP 8
on a DGX A100, a mid-size model where the all-reduces matter.

Constants only, importing nothing, so the command line can show them in its help
without loading the simulator.
"""

DEFAULT_SYSTEM = "dgx-a100"
DEFAULT_MODEL = "gpt3-13b"
DEFAULT_TP = 8
DEFAULT_SEQ = 2048
#: Phases: a prompt (time to first token) or one token against a KV cache.
PREFILL = "prefill"
DECODE = "decode"
#: The metric each phase reports.
METRIC_OF_PHASE = {PREFILL: "ttft_s", DECODE: "tpot_s"}
