"""The batching comparison's arithmetic: groups, padding, round orders, verdicts (no engine, no timing)."""

from __future__ import annotations

import argparse

import pytest

from jobs.bench.batching import batching_variants, compare, fixed_row_groups, padded_tokens, rotated_orders, verdict
from jobs.bench.job import _row_counts
from jobs.bench.report import render_batching
from operators.infer.batching import longest_first


def test_fixed_row_groups_keep_source_order():
    assert fixed_row_groups(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert fixed_row_groups(0, 3) == []
    assert longest_first([3, 9, 1, 9]) == [1, 3, 0, 2]


def test_padded_tokens_pad_every_group_to_its_longest_row():
    lengths = [10, 200, 12, 190]
    assert padded_tokens(lengths, [[0, 1, 2, 3]]) == 4 * 200
    assert padded_tokens(lengths, [[0, 1], [2, 3]]) == 2 * 200 + 2 * 190
    assert padded_tokens(lengths, [[1, 3], [0, 2]]) == 2 * 200 + 2 * 12  # length-sorted: almost no padding


def test_rotated_orders_put_every_variant_first_and_last():
    orders = rotated_orders(["a", "b", "c"], 4)
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert {o[0] for o in orders[:3]} == {"a", "b", "c"} and {o[-1] for o in orders[:3]} == {"a", "b", "c"}


def test_verdict_needs_every_round_on_one_side():
    assert verdict([1.0, 1.1, 1.2], [1.3, 1.5, 1.4]) == "faster"
    assert verdict([2.0, 2.1], [1.0, 1.9]) == "slower"
    assert verdict([1.0, 1.4], [1.2, 1.5]) == "within noise"


def test_variants_the_job_first_then_fixed_rows_then_one_call():
    lengths = [5, 300, 7, 280, 6]
    variants = batching_variants(lengths, 600, [2, 2, 4], one_call=True)
    assert list(variants) == ["token budget 600, length-sorted (this job)", "fixed 2-row batches, source order",
                              "fixed 4-row batches, source order", "one call, length-sorted (raw engine)"]
    assert variants["token budget 600, length-sorted (this job)"] == [[1, 3], [2, 4, 0]]
    assert variants["one call, length-sorted (raw engine)"] == [[1, 3, 2, 4, 0]]
    for groups in variants.values():  # every variant embeds every row once
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert "one call" not in " ".join(batching_variants(lengths, 600, [2], one_call=False))


def test_compare_on_a_padded_cost_model():
    """An engine whose time is its padded tokens (a fake clock): the token budget wins, every round."""
    lengths = [4, 250, 6, 240, 5, 8, 230, 7] * 4
    now = [0.0]

    def run(groups):
        now[0] += padded_tokens(lengths, groups) / 1000

    variants = batching_variants(lengths, 1000, [8], one_call=False)
    result = compare(run, lengths, variants, rounds=3, clock=lambda: now[0])
    assert result["rows"] == 32 and result["tokens"] == sum(lengths) and result["rounds"] == 3
    budget, fixed = (result["variants"][k] for k in variants)
    assert result["reference"] == next(iter(variants)) and budget["verdict"] is None
    assert budget["seconds"] == [padded_tokens(lengths, variants[result["reference"]]) / 1000] * 3
    assert fixed["verdict"] == "faster"  # the token budget is faster than fixed rows
    assert fixed["vs_reference"] == pytest.approx(fixed["padding"] / budget["padding"], rel=1e-2)
    assert fixed["calls"] == 4 and fixed["padding"] > 2 * budget["padding"]
    text = render_batching({"padded": result})
    assert "padded engine" in text and "token budget: faster" in text and "fixed 8-row batches" in text


def test_fixed_rows_option():
    assert _row_counts("32,256") == [32, 256] and _row_counts("64") == [64]
    for bad in ("", "0", "32,x"):
        with pytest.raises(argparse.ArgumentTypeError, match="row count"):
            _row_counts(bad)
