"""Charts of a served stream: latency distributions, and the batch and KV cache over time."""

from __future__ import annotations

from pathlib import Path

from des.plot import save_png


def latency_cdfs(rows: list[dict], path: Path, title: str) -> Path:
    """Cumulative distributions of TTFT, time per output token and end-to-end latency."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    for index, (key, label) in enumerate((("ttft_s", "time to first token"), ("tpot_s", "time per output token"),
                                          ("e2e_s", "end-to-end latency"))):
        ax = fig.add_subplot(1, 3, index + 1)
        values = sorted(r[key] * 1e3 for r in rows if r[key] is not None)
        if values:
            ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post")
        ax.set_xlabel(f"{label} (ms)")
        ax.set_ylim(0, 1.02)
        if index == 0:
            ax.set_ylabel("fraction of requests")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig.canvas, path)


def occupancy(iterations: list[dict], path: Path, title: str) -> Path:
    """Batch size and KV-cache occupancy at the end of each iteration."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    times = [it["end_s"] for it in iterations]
    ax.plot(times, [it["batch"] for it in iterations], color="#1f77b4", linewidth=0.8, label="batch (sequences)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sequences in the batch")
    other = ax.twinx()
    other.plot(times, [it["kv_occupancy"] * 100 for it in iterations], color="#d62728", linewidth=0.8,
               label="KV cache used")
    other.set_ylabel("KV cache used (%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig.canvas, path)
