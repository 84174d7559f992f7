"""Request streams for ``des serve``: arrivals and lengths, seeded, or read from a trace.

Arrivals: a Poisson process at ``rate`` requests per second (exponential gaps), or a
Gamma process of the same rate and a coefficient of variation ``cv`` (gaps Gamma of
shape ``1 / cv^2``: burstier than Poisson above 1). Lengths: a fixed number of tokens,
or ``LOW-HIGH`` drawn uniformly (whole tokens). One :class:`random.Random` seeded with
``seed`` draws everything, so the same arguments give the same stream. A trace is a CSV
file with ``arrival_s, prompt_tokens, output_tokens``.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

from des.errors import DesError


@dataclass(frozen=True)
class Request:
    """One request: when it arrives, its prompt and how many tokens it generates."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


def parse_lengths(text: str, what: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"512-2048"`` -> (512, 2048); a bad value is one error."""
    parts = str(text).split("-")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, -1)
    except ValueError:
        low, high = 0, -1
    if len(parts) not in (1, 2) or low < 1 or high < low:
        raise DesError(f"{what}: expected a number of tokens or LOW-HIGH (whole, at least 1), got {text!r}")
    return low, high


def generate(count: int, rate_per_s: float, prompt: str, output: str, seed: int = 0, process: str = "poisson",
             cv: float = 1.0) -> list[Request]:
    """``count`` requests arriving at ``rate_per_s`` (module docstring)."""
    if count < 1:
        raise DesError(f"--requests must be at least 1, got {count}")
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise DesError(f"--rate must be a positive number of requests per second, got {rate_per_s!r}")
    if process not in ("poisson", "gamma"):
        raise DesError(f"unknown arrival process {process!r}; known: poisson, gamma")
    if not cv > 0:
        raise DesError(f"the arrivals' coefficient of variation must be positive, got {cv!r}")
    prompts, outputs = parse_lengths(prompt, "--prompt-tokens"), parse_lengths(output, "--output-tokens")
    rng = random.Random(seed)
    shape = 1.0 / (cv * cv)
    now = 0.0
    out = []
    for index in range(count):
        if index:
            gap = rng.expovariate(rate_per_s) if process == "poisson" else rng.gammavariate(shape, 1.0 / (rate_per_s * shape))
            now += gap
        out.append(Request(index, now, rng.randint(*prompts), rng.randint(*outputs)))
    return out


def read_trace(path: str | Path) -> list[Request]:
    """Requests from a CSV trace (``arrival_s, prompt_tokens, output_tokens``), by arrival."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise DesError(f"{path}: no such file") from None
    except OSError as exc:
        raise DesError(f"{path}: cannot read it ({exc.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        need = ("arrival_s", "prompt_tokens", "output_tokens")
        if reader.fieldnames is None or any(name not in reader.fieldnames for name in need):
            raise DesError(f"{path}: a trace needs the columns {', '.join(need)}")
        out = []
        for line, row in enumerate(reader, start=2):
            try:
                arrival, prompt, output = float(row["arrival_s"]), int(row["prompt_tokens"]), int(row["output_tokens"])
            except (TypeError, ValueError):
                raise DesError(f"{path}: line {line}: arrival_s must be a number and the token counts whole numbers") from None
            if not (arrival >= 0 and math.isfinite(arrival)) or prompt < 1 or output < 1:
                raise DesError(f"{path}: line {line}: arrival_s must be zero or more and the token counts at least 1")
            out.append((arrival, line, prompt, output))
    if not out:
        raise DesError(f"{path}: no requests")
    out.sort()
    return [Request(index, arrival, prompt, output) for index, (arrival, _line, prompt, output) in enumerate(out)]
