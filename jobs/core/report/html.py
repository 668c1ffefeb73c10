"""The run report: one self-contained HTML file next to each JSON summary (embed, rerank, eval).

Built from the summary's JSON dict (already redacted), so the report shows exactly what
the summary records: throughput over time, engine actors over time, rejected rows by
reason, and for eval the metric-versus-Matryoshka-size chart. Inline CSS and SVG only:
no script, no font, no image from anywhere, so it opens offline and in a locked-down
browser, and nothing in it can fail to load.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from jobs.core.adapters import model_label
from jobs.core.report.svg_charts import bar_chart, line_chart, rates

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1340px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#666;margin-bottom:14px} .cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:18px} .card span{color:#666;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:12px} svg{border:1px solid #eee;border-radius:4px;background:#fff}
svg .t{font-size:14px;font-weight:600} svg .l{font-size:12px;fill:#444} svg .k{font-size:11px;fill:#444}
svg .g{stroke:#eee} svg .a{stroke:#999}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child{text-align:left} .bad{color:#b00020}
pre{background:#f6f6f6;padding:10px;overflow:auto;font-size:12px}
"""


def _model(d: dict[str, Any]) -> str:
    return escape(model_label(str(d.get("model")), d.get("adapter")))


def _cards(items: list[tuple[str, Any]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{escape(_num(v))}</b><span>{escape(k)}</span></div>' for k, v in items) + "</div>"


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{escape(_num(c))}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def _run_charts(d: dict[str, Any], unit: str) -> str:
    """Throughput and actors over time, rejected rows by reason: what an embed or rerank run shows."""
    points = d.get("throughput") or []
    timeline = (d.get("actors") or {}).get("timeline") or {}
    end = points[-1][0] if points else d.get("seconds", 0)
    actor_series = [(pool, [*map(tuple, s), *([(end, s[-1][1])] if s and s[-1][0] < end else [])])
                    for pool, s in sorted(timeline.items())]
    rejected = sorted((d.get("rejected_by_reason") or {}).items())
    charts = [
        line_chart([(f"{unit}s/s", rates(points, 1))], f"{unit.capitalize()}s per second", "seconds since start",
                   f"{unit}s/s", step=True),
        line_chart([("tokens/s", rates(points, 2))], "Tokens per second", "seconds since start", "tokens/s",
                   step=True),
        line_chart(actor_series, "Engine actors alive", "seconds since start", "actors", step=True),
        bar_chart([(k, float(v)) for k, v in rejected], "Rejected rows by reason", "rows"),
    ]
    return '<div class="charts">' + "".join(charts) + "</div>"


def _time_split(d: dict[str, Any]) -> str:
    """Where the time went (operators/infer/engine_clock.py): the split, and each engine's busy share."""
    split = d.get("time_split") or {}
    engines = split.get("engines") or {}
    if not engines:
        return ""
    bars = [("until the first engine was up", float(split["first_engine_up_s"])),
            ("engines busy (all engines)", float(split["engines_busy_s"])),
            ("engines waiting for input", float(split["engines_waiting_s"]))]
    if split.get("writes") or split.get("commit_s"):  # eval and mine write no table
        bars += [("writing (tasks)", float(split["write_s"])), ("committing (driver)", float(split["commit_s"]))]
    chart = bar_chart(bars, f"Where the time went ({split['wall_s']:.1f} s wall)", "seconds")
    rows = [[key, e["up_at_s"], e["startup_s"], e["batches"], e["rows"], e["busy_s"], e["waiting_s"],
             f"{e['busy_share']:.0%}"] for key, e in engines.items()]
    return ('<div class="charts">' + chart + "</div>"
            + _table(["engine (host:pid)", "up at s", "start-up s", "batches", "rows", "busy s", "waiting s",
                      "busy share"], rows))


def _embed_section(d: dict[str, Any]) -> str:
    written = d.get("rows_written", 0)
    cards = _cards([("rows written", written), ("rows rejected", d.get("rows_rejected", 0)),
                    ("tokens", d.get("tokens", 0)), ("seconds", d.get("seconds", 0.0)),
                    ("rows/s", d.get("rows_per_s", 0.0)), ("tokens/s", d.get("tokens_per_s", 0.0)),
                    ("commits", d.get("commits", 0)), ("table version", d.get("table_version"))])
    parts = [f'<div class="sub">table <b>{escape(str(d.get("table")))}</b> · {escape(str(d.get("table_uri")))} · '
             f'model {_model(d)} · {d.get("dimensions")} dims · mode {escape(str(d.get("mode")))}'
             f' · dtype {escape(str(d.get("engine_dtype")))}</div>', cards, _run_charts(d, "row"), _time_split(d),
             _table(["rows", "count"], [["read", d.get("rows_read", 0)], ["new", d.get("rows_new", 0)],
                                        ["changed (re-embedded)", d.get("rows_changed", 0)],
                                        ["columns updated (vector kept)", d.get("rows_columns_updated", 0)],
                                        ["unchanged (skipped)", d.get("rows_unchanged", 0)],
                                        ["deleted", d.get("rows_deleted", 0)],
                                        ["committed before a restart", d.get("rows_resumed", 0)]])]
    for path, why in sorted((d.get("bad_shards") or {}).items()):
        parts.append(f'<p class="bad">skipped shard {escape(path)}: {escape(why)}</p>')
    if d.get("abandoned_run"):
        parts.append(f'<p class="bad">abandoned run {escape(str(d["abandoned_run"]))}: killed over another source '
                     'listing; this sync kept what it committed</p>')
    if d.get("dtype_note"):
        parts.append(f'<p class="bad">{escape(str(d["dtype_note"]))}</p>')
    if isinstance(d.get("gate"), dict):
        parts.append(_gate_section(d["gate"]))
    return "".join(parts)


def _gate_section(g: dict[str, Any]) -> str:
    """The gate's verdict: both tables' scores side by side, the bars, and where a refused candidate is."""
    verdict = "passed: published" if g.get("passed") else f"FAILED: not published ({g.get('reason')})"
    rows = [[f"candidate (version {g.get('candidate_version')})", g.get("candidate")]]
    if g.get("current") is not None:
        rows.append([f"replaced table (version {g.get('current_version')})", g.get("current")])
    bars = ", ".join(f"{k} {g[k]}" for k in ("min", "max_drop") if g.get(k) is not None)
    return (f"<h2>Gate: {escape(str(g.get('metric')))} at {g.get('dimensions')} dims</h2>"
            f'<p class="{"" if g.get("passed") else "bad"}">{escape(verdict)}; bars: {escape(bars)}; '
            f"{g.get('queries')} judged queries</p>" + _table(["table", str(g.get("metric"))], rows))


def _rerank_section(d: dict[str, Any]) -> str:
    cards = _cards([("pairs written", d.get("pairs_written", 0)), ("queries reranked", d.get("queries_reranked", 0)),
                    ("rows rejected", d.get("rejected_rows", 0)), ("tokens", d.get("tokens", 0)),
                    ("seconds", d.get("seconds", 0.0)), ("table version", d.get("table_version"))])
    return (f'<div class="sub">table <b>{escape(str(d.get("table")))}</b> · {escape(str(d.get("table_uri")))} · '
            f'model {_model(d)} · input {escape(str(d.get("input")))}</div>'
            + cards + _run_charts(d, "source row") + _time_split(d))


def _eval_section(d: dict[str, Any]) -> str:
    metrics = d.get("metrics") or []
    dims = sorted((int(k) for k in (d.get("dims") or {})), reverse=True)
    by = {dim: d["dims"][str(dim)] for dim in dims}
    ascending = sorted(dims)
    series = [(m, [(float(dim), by[dim][m]) for dim in ascending]) for m in metrics]
    dashed: list[str] = []
    reranked = d.get("reranked")
    if reranked and dims:
        rr_dim = float((d.get("rerank") or {}).get("dims") or dims[0])
        for m in metrics:
            name = f"{m} reranked"
            series.append((name, [(float(ascending[0]), reranked[m]), (float(ascending[-1]), reranked[m])]
                           if len(ascending) > 1 else [(rr_dim, reranked[m])]))
            dashed.append(name)
    chart = line_chart(series, "Retrieval quality by Matryoshka size", "dimensions kept", "metric",
                       x_labels={float(x): str(x) for x in ascending}, y_range=(0.0, 1.0), dashed=dashed)
    full = by[dims[0]] if dims else {}
    rows = [[dim, by[dim]["bytes_per_row"], *[by[dim][m] for m in metrics],
             *([f"{by[dim][metrics[0]] / full[metrics[0]]:.1%}"] if full.get(metrics[0]) else ["-"])]
            for dim in dims]
    if reranked:
        rows.append([f"reranked top {(d.get('rerank') or {}).get('top_k')}", "-", *[reranked[m] for m in metrics], "-"])
    table = _table(["dims", "bytes/row", *metrics, f"{metrics[0]} vs {dims[0] if dims else ''}"], rows)
    rejected = sorted((d.get("queries_rejected") or {}).items())
    info = _cards([("queries evaluated", d.get("queries_evaluated", 0)), ("queries read", d.get("queries_read", 0)),
                   ("without judgements", d.get("queries_unjudged", 0)), ("judgements", d.get("judgements", 0)),
                   ("relevant docs not in table", d.get("judged_docs_missing", 0)), ("seconds", d.get("seconds", 0.0))])
    return (f'<div class="sub">table <b>{escape(str(d.get("table")))}</b> (version {d.get("table_version")}) · '
            f'model {escape(str(d.get("model")))} · stored {d.get("stored_dims")} dims</div>' + info
            + '<div class="charts">' + chart
            + (bar_chart([(k, float(v)) for k, v in rejected], "Judged queries not ranked, by reason", "queries")
               if rejected else "")
            + "</div>" + table + _compare_section(d) + _time_split(d))


def _compare_section(d: dict[str, Any]) -> str:
    """`compare:`: both tables' metrics per size, side by side, and this table's lead."""
    c, metrics = d.get("compare"), d.get("metrics") or []
    if not isinstance(c, dict):
        return ""
    rows = []
    for dim, other in c.get("dims", {}).items():
        this = (d.get("dims") or {}).get(dim, {})
        rows += [[f"{dim}: {d.get('table')} v{d.get('table_version')}", *[this.get(m) for m in metrics]],
                 [f"{dim}: {c.get('table')} v{c.get('table_version')}", *[other.get(m) for m in metrics]],
                 [f"{dim}: lead", *[f"{c['delta'][dim][m]:+.4f}" for m in metrics]]]
    return "<h2>Side by side</h2>" + _table(["dims: table", *metrics], rows)


def render_report(d: dict[str, Any]) -> str:
    """The HTML page for a summary dict (`kind`: embed, rerank or eval)."""
    kind = d.get("kind", "embed")
    title = f"batch-embed {kind}: {d.get('table', '')}"
    if kind == "eval":
        body = _eval_section(d)
    elif kind == "rerank":
        body = _rerank_section(d)
    else:
        body = _embed_section(d)
        if isinstance(d.get("rerank"), dict):
            body += "<h2>Reranking (the config's rerank: section)</h2>" + _rerank_section(d["rerank"])
    raw = escape(json.dumps(d, indent=2, sort_keys=True, default=str))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><h1>{escape(title)}</h1>{body}<h2>Summary JSON</h2><details><summary>show</summary>'
            f'<pre>{raw}</pre></details></body></html>\n')
