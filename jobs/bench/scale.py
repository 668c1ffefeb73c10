"""Scale: the job with unlimited simulated engines on N rows against N/10, then a sync night with 1% changed.

What a 100M-row nightly needs to hold, measured at `--scale-rows` (the 10M run is a separate, long
bench; CI runs a small one): the driver's peak memory must not grow with the corpus (within 1.2x of
the run on a tenth), no single process may grow with it either, the last commit must take no more
than twice the first (committing must not slow down as the table grows), and a sync night over the
big table with 1% of its texts edited must cost at most 0.3x the full run.

The corpus is synthetic (slices of the benchmark's paragraph pool, drawn with NumPy) so that 10M rows
are written in minutes, a shard of 100,000 rows at a time.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

SHARD_ROWS = 100_000
CHANGED_SHARE = 0.01
TARGETS = {"driver_growth": 1.2, "last_to_first_commit": 2.0, "sync_to_full": 0.3}


def write_scale_corpora(out: Path, rows: int, seed: int) -> dict[str, Path]:
    """`full` (rows), `small` (rows / 10) and `night2` (full with 1% of the texts edited) Parquet corpora."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.bench.corpus import make_texts

    pool = "\n\n".join(make_texts(2000, seed))
    folders = {name: out / f"corpus-scale-{name}" for name in ("full", "small", "night2")}
    for table in ("scale", "scale_small"):  # their runs create their tables afresh
        shutil.rmtree(out / "work" / table, ignore_errors=True)
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
    rng = np.random.default_rng(seed)
    for n, start in enumerate(range(0, rows, SHARD_ROWS)):
        size = min(SHARD_ROWS, rows - start)
        lengths = np.clip(rng.lognormal(np.log(240), 1.0, size), 16, 2800).astype(int)
        offsets = rng.integers(0, len(pool) - 2800, size)
        texts = [pool[o:o + n_chars] for o, n_chars in zip(offsets.tolist(), lengths.tolist(), strict=True)]
        ids = [f"doc-{start + i:09d}" for i in range(size)]
        table = pa.table({"id": ids, "text": texts})
        name = f"part-{n:05d}.parquet"
        pq.write_table(table, folders["full"] / name, row_group_size=8192)
        if start < max(1, rows // 10):
            small = table.slice(0, max(0, min(size, rows // 10 - start)))
            if small.num_rows:
                pq.write_table(small, folders["small"] / name, row_group_size=8192)
        edited = rng.random(size) < CHANGED_SHARE
        texts2 = [t + " (edited)" if e else t for t, e in zip(texts, edited.tolist(), strict=True)]
        pq.write_table(pa.table({"id": ids, "text": texts2}), folders["night2"] / name, row_group_size=8192)
    return folders


def scale_figures(results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The scale section of bench.json, from the `scale_small`, `scale` and `scale_sync` runs."""
    small, full, night = (results.get(k, {}) for k in ("scale_small", "scale", "scale_sync"))
    if not (small.get("wall_s") and full.get("wall_s")):
        return None
    split = full.get("time_split") or {}
    first, last = split.get("commit_first_s"), split.get("commit_last_s")
    out = {
        "rows": [small.get("rows"), full.get("rows")],
        "driver_peak_rss_mb": [round(small["driver_peak_rss"] / 2**20, 1), round(full["driver_peak_rss"] / 2**20, 1)],
        "driver_growth": round(full["driver_peak_rss"] / small["driver_peak_rss"], 3),
        "largest_process_private_mb": [round(small.get("process_peak_private", 0) / 2**20, 1),
                                       round(full.get("process_peak_private", 0) / 2**20, 1)],
        "largest_process": [small.get("process_peak_name", ""), full.get("process_peak_name", "")],
        "first_commit_s": first, "last_commit_s": last,
        "last_to_first_commit": round(last / first, 3) if first and last else None,
        "full_wall_s": round(full["wall_s"], 1),
        "targets": TARGETS,
    }
    if night.get("wall_s"):
        out.update(sync_wall_s=round(night["wall_s"], 1), sync_rows_changed=night.get("rows"),
                   sync_to_full=round(night["wall_s"] / full["wall_s"], 3))
    return out


def render_scale(s: dict[str, Any] | None) -> list[str]:
    if not s:
        return []
    lines = [f"scale ({s['rows'][0]:,} -> {s['rows'][1]:,} rows, unlimited simulated engines): driver peak "
             f"{s['driver_peak_rss_mb'][0]:,.0f} -> {s['driver_peak_rss_mb'][1]:,.0f} MB (x{s['driver_growth']:.2f}, "
             f"target <= {TARGETS['driver_growth']}); largest other process (private memory) "
             f"{s['largest_process_private_mb'][0]:,.0f} -> {s['largest_process_private_mb'][1]:,.0f} MB "
             f"({' -> '.join(s.get('largest_process') or [])}); "
             f"last commit {s['last_commit_s']} s vs first "
             f"{s['first_commit_s']} s (target <= {TARGETS['last_to_first_commit']}x)"]
    if "sync_to_full" in s:
        lines.append(f"sync night with 1% of texts edited: {s['sync_wall_s']} s vs {s['full_wall_s']} s full = "
                     f"x{s['sync_to_full']:.2f} (target <= {TARGETS['sync_to_full']})")
    return lines
