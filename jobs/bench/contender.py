"""One benchmark contender in a process of its own: `python -m jobs.bench.contender NAME CASE OUT`.

A process of its own gives each contender a clean start (its own Ray, its own
engine), a whole-process wall time like a user's, and its own memory figures
(jobs/bench/measure.py). CASE is the contender's JSON case; OUT receives its results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jobs.bench.batching import run_batching
from jobs.bench.contenders import run_job, run_naive, run_peak, run_raw, run_ray_data_llm
from jobs.bench.measure import MemorySampler, process_seconds
from jobs.bench.pipeline_costs import run_floor, run_stages

CONTENDERS = {"raw": run_raw, "job": run_job, "ray_data_llm": run_ray_data_llm, "naive": run_naive,
              "peak": run_peak, "batching": run_batching, "floor": run_floor, "stages": run_stages}


def main(argv: list[str]) -> int:
    name, case_path, out_path = argv
    case = json.loads(Path(case_path).read_text())
    with MemorySampler() as mem:
        result = CONTENDERS[case.get("runner") or name](case)
    result.setdefault("wall_s", process_seconds())
    result.update(driver_peak_rss=MemorySampler.driver_peak(), workers_peak_rss=mem.workers_peak,
                  process_peak_private=mem.process_peak, process_peak_name=mem.process_peak_name)
    Path(out_path).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
