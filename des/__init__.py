"""des: a discrete-event simulator of LLM inference on several accelerators."""

__version__ = "0.1.0"
