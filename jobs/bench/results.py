"""The benchmark's results: each contender's median run turned into figures, the report dict and its table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jobs.bench.report import (
    after_start_up,
    figures,
    flops_per_token,
    median_runs,
    render_batching,
    render_table,
    round_ratios,
    spread,
    token_weighted_context,
)
from operators.infer.model_spec import DECODER_FAMILIES

LABELS = {
    "raw": "raw vLLM engine (ceiling)",
    "job": "this job (Parquet -> Ray -> Lance)",
    "job_quarter": "this job, 1/4 of the corpus",
    "job_autoscale": "this job, actors 1..N, 1/4 corpus",  # on a Ray told of more CPUs: see _cases
    "ray_data_llm": "ray.data.llm build_processor",
    "naive": "sentence-transformers + lancedb",
    "batching": "batching comparison (vLLM engine, padded engine)",
}


def model_config(model: str) -> dict[str, Any]:
    from operators.infer.model_spec import load_model_spec

    return json.loads((Path(load_model_spec(model).path) / "config.json").read_text())


def build_report(args: argparse.Namespace, rounds: list[dict[str, dict[str, Any]]], corpus: Path,
                 warm_up: dict[str, Any] | None = None, once: dict[str, dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    once = once or {}
    results = median_runs(rounds)
    config = model_config(args.model)
    raw = results.get("raw", {})
    tokens = raw.get("tokens", 0)
    context = token_weighted_context(tokens, raw.get("sum_sq_tokens", 0))
    causal = config.get("model_type") in DECODER_FAMILIES
    fpt = flops_per_token(config, context, causal)
    contenders = figures({k: v for k, v in results.items() if k != "peak"}, tokens)
    gemm = results.get("peak", {})
    rates = {d: gemm.get(f"{d}_gemm_flops_per_s") for d in ("bf16", "fp32")}
    gemm_dtype = max((d for d in rates if rates[d]), key=lambda d: rates[d], default=None)
    peak = rates[gemm_dtype] if gemm_dtype else None  # the faster dtype is the machine's limit
    for f in contenders.values():
        f["model_tflops"] = round(fpt * f["tokens_per_s"] / 1e12, 4)
        f["fraction_of_peak"] = round(fpt * f["tokens_per_s"] / peak, 4) if peak else None
    if raw.get("embed_s"):  # the engine alone, start-up and tokenisation excluded
        inside = tokens / raw["embed_s"]
        contenders["raw"]["tokens_per_s_inside_embed"] = round(inside, 1)
        contenders["raw"]["fraction_of_peak_inside_embed"] = round(fpt * inside / peak, 4) if peak else None
    for name, split in after_start_up(results).items():
        contenders[name].update(split)
    if len(rounds) > 1:
        for name, per_round in round_ratios(rounds).items():
            if name in contenders:
                contenders[name]["rounds"] = per_round
    job = results.get("job", {})
    quarter = results.get("job_quarter", {})
    memory = None
    if "driver_peak_rss" in job and "driver_peak_rss" in quarter:
        memory = {"rows": [quarter["rows"], job["rows"]],
                  "driver_peak_rss_mb": [round(quarter["driver_peak_rss"] / 2**20, 1),
                                         round(job["driver_peak_rss"] / 2**20, 1)],
                  "growth": round(job["driver_peak_rss"] / quarter["driver_peak_rss"], 3)}
    auto = results.get("job_autoscale", {}).get("actors", {})
    errors = {"warm-up": warm_up["error"]} if warm_up and "error" in warm_up else {}
    errors.update({(k if len(rounds) == 1 else f"{k} (round {i})"): v["error"]
                   for i, results in enumerate(rounds, 1) for k, v in results.items() if "error" in v})
    errors.update({k: v["error"] for k, v in once.items() if "error" in v})
    batching = once.get("batching", {})
    return {
        "model_name": args.model,
        "model": {"flops_per_token": fpt, "token_weighted_context": round(context, 1), "causal": causal,
                  "max_tokens": args.max_tokens},
        "machine": {"gemm_flops_per_s": peak, "gemm_dtype": gemm_dtype, "bf16_gemm_flops_per_s": rates["bf16"],
                    "fp32_gemm_flops_per_s": rates["fp32"], "gemm_threads": gemm.get("threads")},
        "corpus": {"path": str(corpus), "rows": args.rows, "tokens": tokens, "seed": args.seed},
        "contenders": contenders,
        "labels": {k: LABELS[k] for k in contenders if k in LABELS},
        "batching": {k: batching[k] for k in ("vllm", "padded") if k in batching} or None,
        "raw_engine": {k: raw.get(k) for k in ("tokenize_s", "embed_s", "engine_args", "cpu_scheduling")},
        "driver_memory": memory,
        "autoscaling": {"max": auto.get("max"), "timeline": auto.get("timeline")},
        "rounds": len(rounds),
        "warm_up": warm_up,
        "errors": errors,
    }


def render(report: dict[str, Any]) -> str:
    lines = [render_table(report["contenders"], LABELS)]
    if report.get("rounds", 1) > 1:
        lines.insert(0, f"each contender's median run of {report['rounds']} rounds:")
    machine = report["machine"]
    peak = machine["gemm_flops_per_s"]
    fpt = report["model"]["flops_per_token"]
    if peak:
        other = {"bf16": "fp32", "fp32": "bf16"}[machine["gemm_dtype"]]
        lines.append(f"\nmachine peak ({machine['gemm_dtype']} GEMM, measured; {other}: "
                     f"{machine[f'{other}_gemm_flops_per_s'] / 1e12:.3f}): {peak / 1e12:.3f} TFLOP/s; model: "
                     f"{fpt / 1e6:.1f} MFLOP per token at a mean context of "
                     f"{report['model']['token_weighted_context']:.0f} tokens")
        for name, f in report["contenders"].items():
            lines.append(f"  {LABELS.get(name, name):34} {f['model_tflops']:.4f} TFLOP/s = "
                         f"{100 * f['fraction_of_peak']:.1f}% of peak")
        raw = report["contenders"].get("raw", {})
        if raw.get("fraction_of_peak_inside_embed") is not None:
            lines.append(f"  raw engine inside embed() only: {raw['tokens_per_s_inside_embed']:,.0f} tokens/s = "
                         f"{100 * raw['fraction_of_peak_inside_embed']:.1f}% of peak")
    split = [(n, f) for n, f in report["contenders"].items() if "start_up_s" in f]
    if split:
        lines.append("\nstart-up (process start -> engine ready) and the rest; x raw after start-up:")
        for name, f in split:
            ratio = f["ratio_to_raw_after_start_up"]
            lines.append(f"  {LABELS.get(name, name):34} start-up {f['start_up_s']:6.1f} s, then "
                         f"{f['after_start_up_s']:7.1f} s" + (f" (x{ratio:.2f})" if ratio is not None else ""))
    with_rounds = [(n, f["rounds"]) for n, f in report["contenders"].items() if "rounds" in f]
    if with_rounds:
        lines.append(f"\nx raw in each of the {report['rounds']} rounds (the raw engine of the same round), whole "
                     "process | after start-up:")
        for name, r in with_rounds:
            lines.append(f"  {LABELS.get(name, name):34} {spread(r['ratio_to_raw'])} | "
                         f"{spread(r['ratio_to_raw_after_start_up'])}")
    if report.get("raw_engine", {}).get("cpu_scheduling"):
        lines.append(f"\nCPU engine threads (the job's engines get the same setting): "
                     f"{report['raw_engine']['cpu_scheduling']}")
    if report.get("batching"):
        lines.append("\n" + render_batching(report["batching"]))
    if report.get("driver_memory"):
        m = report["driver_memory"]
        lines.append(f"driver peak RSS: {m['driver_peak_rss_mb'][0]:,.0f} MB at {m['rows'][0]:,} rows, "
                     f"{m['driver_peak_rss_mb'][1]:,.0f} MB at {m['rows'][1]:,} rows (x{m['growth']:.2f})")
    timeline = report.get("autoscaling", {}).get("timeline") or {}
    for pool, series in timeline.items():
        lines.append(f"autoscaling {pool}: " + " -> ".join(f"{int(n)} at {t:g} s" for t, n in series))
    for name, err in report.get("errors", {}).items():
        lines.append(f"FAILED {name}: {err}")
    return "\n".join(lines)
