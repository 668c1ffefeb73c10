"""The benchmark's figures: pure arithmetic on the contenders' results, the printed table and the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Feed-forward blocks with a gate (SwiGLU: gate, up, down) instead of BERT's up/down pair.
_GATED_ACTIVATIONS = {"silu", "swiglu", "swish"}


def flops_per_token(config: dict[str, Any], context: float, causal: bool) -> float:
    """Forward FLOPs per token: 2 x the layers' weights (matmuls) + attention over `context` tokens.

    Embedding lookups cost no FLOPs; per layer the projections are q, k, v, o and the
    feed-forward matrices, and attention scores + weighted sums take 2 x 2 x context x width
    (a causal model sees half its sequence on average).
    """
    d = config["hidden_size"]
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or d // heads
    kv_heads = config.get("num_key_value_heads") or heads
    ffn = config["intermediate_size"]
    gated = str(config.get("hidden_act", "")).lower() in _GATED_ACTIVATIONS
    attn_weights = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2
    ffn_weights = (3 if gated else 2) * d * ffn
    seen = context / 2 if causal else context
    return layers * (2 * (attn_weights + ffn_weights) + 4 * seen * heads * head_dim)


def token_weighted_context(tokens: int, sum_sq_tokens: int) -> float:
    """Mean sequence length seen by a token: sum(len^2) / sum(len)."""
    return sum_sq_tokens / tokens if tokens else 0.0


def figures(results: dict[str, dict[str, Any]], corpus_tokens: int) -> dict[str, dict[str, Any]]:
    """Per contender: rows/s, tokens/s, ratio to the raw engine (whole-process wall time)."""
    out: dict[str, dict[str, Any]] = {}
    raw = results.get("raw", {})
    raw_rate = raw["rows"] / raw["wall_s"] if raw.get("wall_s") else None
    for name, r in results.items():
        if "rows" not in r or not r.get("wall_s"):
            continue
        tokens = r.get("tokens") or corpus_tokens
        rate = r["rows"] / r["wall_s"]
        out[name] = {
            "rows": r["rows"], "tokens": tokens, "wall_s": round(r["wall_s"], 2),
            "rows_per_s": round(rate, 2), "tokens_per_s": round(tokens / r["wall_s"], 1),
            "driver_peak_rss_mb": round(r["driver_peak_rss"] / 2**20, 1),
            "workers_peak_rss_mb": round(r["workers_peak_rss"] / 2**20, 1),
            "ratio_to_raw": round(rate / raw_rate, 3) if raw_rate else None,
        }
    return out


def engine_up_at(actors: dict[str, Any] | None) -> float | None:
    """Seconds into the job when its first engine actor was alive (the summary's actor timeline)."""
    times = [t for series in ((actors or {}).get("timeline") or {}).values() for t, n in series if n >= 1]
    return min(times) if times else None


def after_start_up(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Whole-process wall split into start-up (until the engine can take work) and the rest.

    A night's corpus pays start-up once and the rest per token, so the ratio after
    start-up is what a big run converges to. Raw engine: start-up = wall - tokenising -
    embed(). Job: start-up = process start -> first engine actor alive (the summary's
    actor timeline); the rest still holds reading, tokenising, writing and the commits.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, r in results.items():
        if not r.get("wall_s") or "error" in r:
            continue
        if name == "raw" and r.get("embed_s"):
            work = r["embed_s"] + r.get("tokenize_s", 0.0)
        elif r.get("job_s") and (up := engine_up_at(r.get("actors"))) is not None:
            work = r["job_s"] - up
        else:
            continue
        out[name] = {"start_up_s": round(r["wall_s"] - work, 2), "after_start_up_s": round(work, 2)}
    raw_tokens = results.get("raw", {}).get("tokens")
    raw_rate = raw_tokens / out["raw"]["after_start_up_s"] if "raw" in out and raw_tokens else None
    for name, f in out.items():
        tokens = results[name].get("tokens")
        f["ratio_to_raw_after_start_up"] = (
            round(tokens / f["after_start_up_s"] / raw_rate, 3) if raw_rate and tokens else None)
    return out


def lower_median(ordered: list[Any]) -> Any:
    """The middle item of a sorted list, the lower of the two middle ones for an even count."""
    return ordered[(len(ordered) - 1) // 2]


def median_runs(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per contender, its run with the median wall time over the rounds (the lower middle of an even count).

    Whole runs are kept, not medians of each figure, so a contender's figures stay
    consistent with each other. A contender that failed in every round keeps its last error.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(n for results in rounds for n in results):
        runs = [results[name] for results in rounds if name in results]
        ok = sorted((r for r in runs if "error" not in r and r.get("wall_s")), key=lambda r: r["wall_s"])
        out[name] = lower_median(ok) if ok else runs[-1]
    return out


def round_ratios(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, list[float | None]]]:
    """Per contender, every round's wall time and its ratios to the raw engine of the same round.

    Rounds run the contenders one after the other, so a slow spell of the machine
    hits a round's raw engine and its job alike: the per-round ratio is steadier than
    a ratio of two separate runs. None where a round failed or had no raw engine.
    """
    out: dict[str, dict[str, list[float | None]]] = {}
    names = list(dict.fromkeys(n for results in rounds for n in results if n != "peak"))
    for results in rounds:
        whole = figures(results, corpus_tokens=0)
        split = after_start_up(results)
        for name in names:
            entry = out.setdefault(name, {"wall_s": [], "ratio_to_raw": [], "ratio_to_raw_after_start_up": []})
            entry["wall_s"].append(whole.get(name, {}).get("wall_s"))
            entry["ratio_to_raw"].append(whole.get(name, {}).get("ratio_to_raw"))
            entry["ratio_to_raw_after_start_up"].append(split.get(name, {}).get("ratio_to_raw_after_start_up"))
    return out


def spread(values: list[float | None]) -> str:
    """'0.81 0.84 0.72 (median 0.81)': one round's figure each, '-' where it is missing."""
    shown = " ".join("-" if v is None else f"{v:.2f}" for v in values)
    known = sorted(v for v in values if v is not None)
    return shown + (f" (median {lower_median(known):.2f})" if known else "")


def render_table(rows: dict[str, dict[str, Any]], labels: dict[str, str]) -> str:
    head = f"{'contender':34} {'rows':>8} {'wall s':>8} {'rows/s':>8} {'tokens/s':>9} {'x raw':>6} " \
           f"{'driver MB':>9} {'workers MB':>10}"
    lines = [head, "-" * len(head)]
    for name, f in rows.items():
        ratio = f"{f['ratio_to_raw']:.2f}" if f["ratio_to_raw"] is not None else "-"
        lines.append(f"{labels.get(name, name):34} {f['rows']:>8,} {f['wall_s']:>8.1f} {f['rows_per_s']:>8.1f} "
                     f"{f['tokens_per_s']:>9,.0f} {ratio:>6} {f['driver_peak_rss_mb']:>9,.0f} "
                     f"{f['workers_peak_rss_mb']:>10,.0f}")
    return "\n".join(lines)


BATCHING_ENGINES = {"vllm": "vLLM engine (the job's and the raw contender's)",
                    "padded": "padded engine (sentence-transformers: each batch padded to its longest row)"}


def render_batching(batching: dict[str, Any]) -> str:
    """The batching comparison: per engine, each variant's median seconds, spread, padding and verdict."""
    lines = ["batching: the same inputs batched several ways, every variant once a round in a rotated order; "
             "median s (fastest-slowest round), time against the token budget, padding = tokens a padded kernel "
             "computes per real token"]
    for engine, label in BATCHING_ENGINES.items():
        part = batching.get(engine)
        if not part:
            continue
        lines.append(f"  {label}: {part['rows']:,} rows, {part['tokens']:,} tokens, {part['rounds']} rounds")
        for name, v in part["variants"].items():
            seconds = v["seconds"]
            line = (f"    {name:46} {v['median_s']:7.2f} s ({min(seconds):.2f}-{max(seconds):.2f})  "
                    f"x{v['vs_reference']:.2f}  {v['calls']:>5,} calls  padding {v['padding']:.2f}x")
            if v["verdict"]:
                line += f"  token budget: {v['verdict']}"
            lines.append(line)
    return "\n".join(lines)


def _round_range(rows: dict[str, dict[str, Any]], names: list[str], rates: list[float]) -> list[list[float]]:
    """Whiskers from the slowest to the fastest round's rows/s."""
    low, high = [], []
    for name, rate in zip(names, rates, strict=True):
        walls = [w for w in rows[name].get("rounds", {}).get("wall_s", []) if w]
        per_round = [rows[name]["rows"] / w for w in walls] or [rate]
        low.append(max(0.0, rate - min(per_round)))
        high.append(max(0.0, max(per_round) - rate))
    return [low, high]


def _batching_panel(ax: Any, batching: dict[str, Any]) -> None:
    """Each variant's time against the token budget (1.0), per engine; whiskers: fastest to slowest round."""
    labels, values, low, high, colours = [], [], [], [], []
    for engine, colour in (("vllm", "#228833"), ("padded", "#cc6677")):
        part = batching.get(engine) or {}
        variants = part.get("variants", {})
        base = variants.get(part.get("reference"), {}).get("median_s")
        if not base:
            continue
        for name, v in variants.items():
            labels.append(f"{'vLLM' if engine == 'vllm' else 'padded'}: {name}")
            values.append(v["median_s"] / base)
            low.append(v["median_s"] / base - min(v["seconds"]) / base)
            high.append(max(v["seconds"]) / base - v["median_s"] / base)
            colours.append(colour)
    ax.barh(labels, values, color=colours, xerr=[low, high] if labels else None, error_kw={"capsize": 3})
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("time / the token budget's (whiskers: rounds)")
    ax.set_title("Batching (green: vLLM, red: padded)" if labels else "Batching (not run)")
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()


def write_chart(report: dict[str, Any], labels: dict[str, str], path: Path) -> None:
    """Four panels: throughput vs the raw engine, peak memory, the autoscaling pool, batching."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    rows = report["contenders"]
    names = list(rows)
    ax = axes[0][0]
    rates = [rows[n]["rows_per_s"] for n in names]
    several = report.get("rounds", 1) > 1
    bars = ax.barh([labels.get(n, n) for n in names], rates, color="#4477aa",
                   xerr=_round_range(rows, names, rates) if several else None,
                   error_kw={"elinewidth": 1, "capsize": 3})
    for bar, n in zip(bars, names, strict=True):
        ratio = rows[n]["ratio_to_raw"]
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {ratio:.2f}x raw" if ratio else "",
                va="center", fontsize=8)
    ax.set_xlabel("rows/s (whole-process wall time" + (", median run; whiskers: every round)" if several else ")"))
    ax.set_title(f"Throughput, {report['corpus']['rows']:,} rows, {report['model_name']}")
    ax.invert_yaxis()

    ax = axes[0][1]
    ys = range(len(names))
    ax.barh([y - 0.2 for y in ys], [rows[n]["driver_peak_rss_mb"] for n in names], height=0.4, label="driver")
    ax.barh([y + 0.2 for y in ys], [rows[n]["workers_peak_rss_mb"] for n in names], height=0.4,
            label="other processes (Ray, workers, engines)")
    ax.set_yticks(list(ys), [labels.get(n, n) for n in names])
    ax.set_xlabel("peak RSS, MB")
    ax.set_title("Memory")
    ax.legend(fontsize=8, loc="lower right")
    ax.invert_yaxis()

    ax = axes[1][0]
    timeline = {p: s for p, s in (report.get("autoscaling", {}).get("timeline") or {}).items() if s}
    for pool, series in timeline.items():
        ax.step([t for t, _ in series], [n for _, n in series], where="post", label=pool)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("engine actors alive")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    auto_max = report.get("autoscaling", {}).get("max")
    ax.set_title(f"Autoscaling pool (actors min 1, max {auto_max})" if auto_max else "Autoscaling pool (not run)")
    if timeline:
        ax.legend(fontsize=8)

    _batching_panel(axes[1][1], report.get("batching") or {})
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
