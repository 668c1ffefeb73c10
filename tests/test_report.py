"""The run report: charts drawn from the summary, a self-contained page, opened in a real browser."""

from __future__ import annotations

import json
import re

import pytest

from jobs.core.paths import report_path
from jobs.core.report.html import render_report
from jobs.core.report.svg_charts import nice_ticks, rates
from jobs.core.report.throughput_timeline import ThroughputTimeline
from tests.browser import open_page


def embed_summary(**extra) -> dict:
    d = {"kind": "embed", "table": "docs", "table_uri": "/db/docs.lance", "table_version": 3, "model": "m",
         "dimensions": 256, "mode": "sync", "rows_read": 1200, "rows_written": 1100, "rows_rejected": 100,
         "rows_new": 1000, "rows_changed": 100, "rows_unchanged": 0, "rows_deleted": 0, "rows_resumed": 0,
         "rejected_by_reason": {"empty_text": 60, "duplicate_id": 40}, "tokens": 50_000, "seconds": 12.0,
         "rows_per_s": 91.7, "tokens_per_s": 4166.7, "commits": 2,
         "throughput": [[0.0, 0, 0], [4.0, 400, 16000], [8.0, 900, 36000], [12.0, 1200, 50000]],
         "actors": {"min": 1, "max": 2, "timeline": {"Embedder": [[0.5, 0], [2.0, 1], [6.0, 2], [11.0, 0]]}},
         "bad_shards": {"s3://b/bad.parquet": "not a Parquet file"}}
    d.update(extra)
    return d


def eval_summary() -> dict:
    dims = {"384": {"ndcg@10": 0.58, "recall@10": 0.79, "bytes_per_row": 1536},
            "128": {"ndcg@10": 0.52, "recall@10": 0.72, "bytes_per_row": 512},
            "32": {"ndcg@10": 0.33, "recall@10": 0.50, "bytes_per_row": 128}}
    return {"kind": "eval", "table": "docs", "table_version": 1, "model": "m", "stored_dims": 384,
            "metrics": ["ndcg@10", "recall@10"], "dims": dims, "ndcg@10": 0.58, "recall@10": 0.79,
            "reranked": {"ndcg@10": 0.66, "recall@10": 0.81}, "rerank": {"model": "r", "top_k": 20, "dims": 384},
            "queries_rejected": {"empty_query": 2}, "queries_evaluated": 98, "queries_read": 100}


def test_rates_are_steps_of_average_throughput():
    points = [[0.0, 0, 0], [10.0, 100, 1000], [20.0, 100, 1000], [30.0, 400, 4000]]
    assert rates(points, 1) == [(0.0, 10.0), (10.0, 0.0), (20.0, 30.0), (30.0, 30.0)]
    assert rates(points, 2)[2] == (20.0, 300.0)
    assert rates([[0.0, 0, 0]], 1) == []


def test_nice_ticks_cover_the_range():
    assert nice_ticks(0, 0.97) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = nice_ticks(0, 1234)
    assert ticks[0] == 0 and ticks[-1] >= 1234 and len(ticks) <= 7


def test_throughput_timeline_keeps_cumulative_points_and_the_final_totals():
    tl = ThroughputTimeline(interval=0.0)
    for _ in range(5):
        tl.add(10, 100)
    points = tl.close()
    assert points[0] == [0.0, 0, 0] and points[-1][1:] == [50, 500]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(points, points[1:], strict=False))
    small = ThroughputTimeline(interval=0.0, max_points=10)
    for _ in range(100):
        small.add(1, 1)
    assert len(small.close()) <= 11 and small.points[-1][1:] == [100, 100]


@pytest.mark.parametrize("summary", [embed_summary(), eval_summary(),
                                     embed_summary(kind="rerank", pairs_written=5, input="pairs")])
def test_report_is_self_contained(summary):
    page = render_report(summary)
    # Nothing loads from anywhere: no script, stylesheet, image or font by URL (the SVG namespace is a name).
    assert not re.search(r"<script|<link|<img|<iframe|src=|url\(|@import", page)
    assert set(re.findall(r"https?://[^\s\"'<]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert page.count("<svg") >= 2 and "<h1>" in page


def test_report_escapes_what_it_shows():
    page = render_report(embed_summary(table="<script>alert(1)</script>", rejected_by_reason={"<b>x": 1}))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page and "&lt;b&gt;x" in page


def test_embed_report_counts_what_a_night_did():
    page = render_report(embed_summary(rows_columns_updated=7, engine_dtype="bfloat16", abandoned_run="abc123",
                                       dtype_note="the table holds float32 vectors and this run writes bfloat16 ones"))
    for label in ("columns updated (vector kept)", ">7<", "dtype bfloat16", "abandoned run abc123",
                  "holds float32 vectors"):
        assert label in page, label


def test_eval_report_shows_every_size_and_the_reranked_line():
    page = render_report(eval_summary())
    for label in (">384<", ">128<", ">32<", "ndcg@10 reranked", "reranked top 20", "1,536"):
        assert label in page
    assert "stroke-dasharray" in page  # reranked figures are drawn dashed


def test_report_path_sits_next_to_the_summary():
    assert report_path("s3://b/_runs/t-1.json") == "s3://b/_runs/t-1.html"
    assert report_path("/x/metrics") == "/x/metrics.html"


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["embed", "rerank", "eval"])
def test_report_renders_in_chromium_without_console_errors(tmp_path, kind):
    summary = {"embed": embed_summary(), "rerank": embed_summary(kind="rerank", input="pairs"),
               "eval": eval_summary()}[kind]
    html = tmp_path / "report.html"
    html.write_text(render_report(summary))
    dom, console = open_page(html, screenshot=tmp_path / "report.png")
    assert console == []
    assert dom.count("<svg") >= 2 and (tmp_path / "report.png").stat().st_size > 10_000
    title = {"embed": "Rows per second", "rerank": "Source rows per second",
             "eval": "Retrieval quality by Matryoshka size"}[kind]
    assert title in dom


@pytest.mark.browser
def test_console_check_catches_a_broken_page(tmp_path):
    """The check above would see an error: a page with a failing script is caught."""
    html = tmp_path / "broken.html"
    html.write_text("<!DOCTYPE html><html><body><script>console.error('bad'); nope();</script></body></html>")
    _, console = open_page(html)
    assert any("nope is not defined" in line for line in console), console


def test_summary_json_round_trips_into_the_report():
    d = json.loads(json.dumps(embed_summary()))
    assert "Engine actors alive" in render_report(d)
