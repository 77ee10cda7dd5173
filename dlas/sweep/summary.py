"""Plain-text lines and tables of results, for the terminal."""
from __future__ import annotations

import re
from collections import Counter

from dlas.store.results import LAYERS


def _pct(value) -> str:
    return f"{100 * value:5.1f}%" if isinstance(value, (int, float)) else "    - "


def _size(nbytes) -> str:
    return f"{nbytes / 2**20:7.2f} MiB" if isinstance(nbytes, (int, float)) else "      -    "


def _latency(m: dict) -> str:
    med = m.get("latency_ms_median")
    if med is None:
        return "-"
    text = f"{med:8.3f} ms ± {m.get('latency_ms_std', 0):.3f} (p90 {m.get('latency_ms_p90', med):.3f})"
    retries = m.get("measure_retries")
    return text + (" noisy" if m.get("noisy") else "") + (f" retried {retries}x" if retries else "")


def row_line(row: dict, reused: bool = False) -> str:
    """One line per point: layers, status, accuracy (PyTorch / compiled), size, latency."""
    point = " ".join(f"{row.get(layer) or '-'}" for layer in LAYERS)
    m = row.get("metrics") or {}
    if row["status"] != "ok":
        return f"{row['status']:<11} {point} | [{row.get('layer') or '?'}] {row.get('reason')}"
    tag = "ok (reused)" if reused else "ok"
    # budget_hit: training stopped by trainer.max_time, so the model depends on machine speed
    return (f"{tag:<11} {point} | acc torch {_pct(m.get('accuracy_torch'))} "
            f"compiled {_pct(m.get('accuracy_compiled'))}"
            f"{' budget_hit' if m.get('budget_hit') else ''} | size {_size(m.get('size_bytes'))} | "
            f"latency {_latency(m)}")


def reason_kind(reason: str | None) -> str:
    """A reason without the per-point traceback file, so equal failures group together."""
    return re.sub(r" \(traceback: [^)]*\)$", "", reason or "")


def summary_table(rows: list[dict]) -> str:
    """The end-of-sweep table: one line per point, then counts and failures by layer/reason."""
    counts = Counter(r["status"] for r in rows)
    lines = [f"sweep summary: {len(rows)} points — "
             + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "unsupported", "failed"))]
    lines += ["  " + row_line(r) for r in rows]
    problems = Counter((r["status"], r.get("layer") or "?", reason_kind(r.get("reason")))
                       for r in rows if r["status"] != "ok")
    if problems:
        lines.append("not ok, by layer and reason:")
        lines += [f"  {n} x {status} [{layer}] {reason}"
                  for (status, layer, reason), n in problems.most_common()]
    return "\n".join(lines)
