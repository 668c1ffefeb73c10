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
from jobs.bench.scale import render_scale, scale_figures
from operators.infer.model_spec import DECODER_FAMILIES

PIPELINE = ("floor", "ceiling", "fleet", "stages")  # simulated engines or none: their own section, not the table
TARGETS = {"ceiling_to_floor": 0.8, "fleet_to_k_r": 0.9}  # issue 31's targets, shown next to each figure

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
    contenders = figures({k: v for k, v in results.items() if k != "peak" and k not in PIPELINE}, tokens)
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
        if name in contenders:
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
        "pipeline": pipeline_figures(results, context),
        "naive_dtype": results.get("naive", {}).get("dtype"),
        "scale": scale_figures(once),
        "rounds": len(rounds),
        "warm_up": warm_up,
        "errors": errors,
    }


def pipeline_figures(results: dict[str, dict[str, Any]], context: float) -> dict[str, Any]:
    """The pipeline around the engines: ceiling vs floor, fleet feeding, CPU cost per stage (+ a GPU projection)."""
    from jobs.bench.pipeline_costs import gpu_projection

    out: dict[str, Any] = {}
    floor, ceiling, fleet, stages = (results.get(k, {}) for k in PIPELINE)
    if floor.get("wall_s") and ceiling.get("wall_s") and "rows" in floor and "rows" in ceiling:
        f, c = floor["rows"] / floor["wall_s"], ceiling["rows"] / ceiling["wall_s"]
        out["ceiling"] = {"rows": ceiling["rows"], "floor_rows_per_s": round(f, 1), "ceiling_rows_per_s": round(c, 1),
                          "ratio": round(c / f, 3), "target": TARGETS["ceiling_to_floor"],
                          "time_split": ceiling.get("time_split")}
    split = fleet.get("time_split") or {}
    if split.get("engines") and fleet.get("job_s"):
        engine = fleet["config"]["engine"]
        k, r = engine["actors"]["max"], engine["simulated"]["tokens_per_second"]
        after = fleet["job_s"] - split["first_engine_up_s"]
        rate = fleet["tokens"] / after if after > 0 else 0.0
        out["fleet"] = {"engines": k, "engine_tokens_per_s": r, "rows": fleet["rows"],
                        "tokens_per_s_after_first_engine_up": round(rate, 1), "ratio_to_k_r": round(rate / (k * r), 3),
                        "target": TARGETS["fleet_to_k_r"], "busy_share": split.get("busy_share"),
                        "engine_busy_shares": [e["busy_share"] for e in split["engines"].values()]}
    if stages.get("cpu_s"):
        rows, tokens = max(stages["rows"], 1), max(stages["tokens"], 1)
        out["stages"] = {"rows": stages["rows"], "tokens": stages["tokens"],
                         "cpu_us_per_row": {k: round(v / rows * 1e6, 2) for k, v in stages["cpu_s"].items()},
                         "cpu_us_per_token": {k: round(v / tokens * 1e6, 3) for k, v in stages["cpu_s"].items()},
                         "projection": gpu_projection(stages, context or stages.get("context", 0.0))}
    return out


def render_pipeline(p: dict[str, Any]) -> list[str]:
    lines = []
    if p.get("ceiling"):
        c = p["ceiling"]
        lines.append(f"\npipeline ceiling ({c['rows']:,} rows, unlimited simulated engines): "
                     f"{c['ceiling_rows_per_s']:,.0f} rows/s vs one-process floor {c['floor_rows_per_s']:,.0f} "
                     f"rows/s = x{c['ratio']:.2f} (target >= {c['target']})")
    if p.get("fleet"):
        f = p["fleet"]
        lines.append(f"fleet feeding: {f['engines']} simulated engines x {f['engine_tokens_per_s']:,.0f} tokens/s: "
                     f"{f['tokens_per_s_after_first_engine_up']:,.0f} tokens/s after the first engine was up = "
                     f"x{f['ratio_to_k_r']:.2f} of k x r (target >= {f['target']}); engines busy "
                     + ", ".join(f"{s:.0%}" for s in f["engine_busy_shares"]))
    if p.get("stages"):
        s, g = p["stages"], p["stages"]["projection"]
        lines.append("CPU per row by stage (us): "
                     + ", ".join(f"{k} {v:,.1f}" for k, v in s["cpu_us_per_row"].items()))
        lines.append(f"one {g['gpu']} on {g['model']} at {g['efficiency']:.0%} of bf16 peak: "
                     f"{g['gpu_tokens_per_s']:,} tokens/s at {g['context_tokens']:.0f} tokens of context; the "
                     f"pipeline costs {g['cpu_us_per_token']:.2f} CPU-us per token here: {g['cores_to_feed']:.1f} "
                     "such cores keep it fed")
    return lines


def render(report: dict[str, Any]) -> str:
    lines = [render_table(report["contenders"], LABELS)] if report["contenders"] else []
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
    lines += render_pipeline(report.get("pipeline") or {})
    lines += render_scale(report.get("scale"))
    timeline = report.get("autoscaling", {}).get("timeline") or {}
    for pool, series in timeline.items():
        lines.append(f"autoscaling {pool}: " + " -> ".join(f"{int(n)} at {t:g} s" for t, n in series))
    for name, err in report.get("errors", {}).items():
        lines.append(f"FAILED {name}: {err}")
    return "\n".join(lines)
