"""Pure functions: prompt formats, token cutting, token-budget groups, MRL, hashes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from operators.infer.batching import group_by_token_budget
from operators.infer.matryoshka import l2_normalize, mrl_truncate
from operators.infer.prompts import cut_and_end, cut_keep_last, format_input, format_query
from operators.prepare.fingerprints import fingerprint, hash_rows, hash_strings, hash_values, text_hash

END = 0


def test_query_prompt_is_the_model_card_format():
    assert format_query("Find code", "sort a list") == "Instruct: Find code\nQuery:sort a list"
    assert format_input("sort a list", "query", "Find code") == "Instruct: Find code\nQuery:sort a list"


def test_documents_carry_no_instruction():
    assert format_input("a doc", "document", "ignored") == "a doc"
    assert format_query("", "bare") == "bare"


@given(st.lists(st.integers(1, 999), max_size=50), st.integers(2, 40))
def test_cut_and_end_always_ends_with_the_end_token(ids, max_tokens):
    out, truncated = cut_and_end(ids, max_tokens, END)
    assert out[-1] == END
    assert len(out) <= max_tokens
    assert out[:-1] == ids[: max_tokens - 1]
    assert truncated == (len(ids) > max_tokens - 1)


def test_cut_and_end_does_not_double_an_existing_end_token():
    assert cut_and_end([5, 6, END], 10, END) == ([5, 6, END], False)


def test_cut_keep_last_keeps_the_closing_special():
    assert cut_keep_last([101, 1, 2, 3, 4, 102], 4) == ([101, 1, 2, 102], True)
    assert cut_keep_last([101, 1, 102], 4) == ([101, 1, 102], False)


@given(st.lists(st.integers(1, 300), max_size=80), st.integers(1, 600))
def test_token_groups_cover_every_row_once_within_budget(lengths, budget):
    groups = group_by_token_budget(lengths, budget)
    flat = sorted(i for g in groups for i in g)
    assert flat == list(range(len(lengths)))
    for g in groups:
        padded = len(g) * max(lengths[i] for i in g)  # what a kernel that pads to the longest row computes
        assert padded <= budget or len(g) == 1  # an over-budget row goes alone
    for g in groups[:-1]:  # every group but the last is full: one more row would not have fit
        assert (len(g) + 1) * max(lengths[i] for i in g) > budget


def test_token_groups_put_similar_lengths_together():
    groups = group_by_token_budget([5, 100, 6, 98], 200)
    assert [sorted(g) for g in groups] == [[1, 3], [0, 2]]
    # short rows come many to a group, long ones few: 2 x 100, then 33 x 6 (<= 200 padded), then the rest
    groups = group_by_token_budget([100, 100] + [6] * 40, 200)
    assert [len(g) for g in groups] == [2, 33, 7]


@given(arrays(np.float32, (4, 16), elements=st.floats(-10, 10, width=32)), st.integers(1, 16))
def test_mrl_truncate_keeps_the_prefix_direction_and_unit_norm(v, d):
    out = mrl_truncate(v, d)
    assert out.shape == (4, d)
    norms = np.linalg.norm(out, axis=1)
    prefix_norms = np.linalg.norm(v[:, :d], axis=1)
    for row, n, pn, src in zip(out, norms, prefix_norms, v[:, :d], strict=True):
        if pn > 1e-6:
            assert n == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(row * pn, src, rtol=1e-4, atol=1e-4)
        else:
            assert np.all(np.isfinite(row))


def test_mrl_refuses_more_dimensions_than_the_vector_has():
    with pytest.raises(ValueError, match="cannot keep 8 dimensions of 4"):
        mrl_truncate(np.ones((1, 4)), 8)


def test_vectorised_hashes_match_across_chunking_types_and_lengths():
    values = ["doc-1", "doc-1", "", None, "é" * 40, "x" * 300, "x" * 300 + "y", "a\x00", "a"]
    h = hash_strings(pa.array(values))
    assert h[0] == h[1] and h[2] == h[3]  # null hashes as ""
    assert hash_strings(pa.array(["doc-1"]))[0] == h[0]  # whatever else the batch holds
    assert len(set(h.tolist())) == len(values) - 2  # everything else differs: zero bytes, long strings too
    # the same values from a slice, another chunking or large_string hash the same
    assert hash_strings(pa.array(values).slice(4)).tolist() == h[4:].tolist()
    assert hash_strings(pa.chunked_array([values[:3], values[3:]], pa.large_string())).tolist() == h.tolist()
    # ... and in a fresh process (resume, sync and the registry's partitions rely on it)
    import subprocess
    import sys

    code = ("import pyarrow as pa; from operators.prepare.fingerprints import hash_strings; "
            "print(hash_strings(pa.array(['doc-1', 'x' * 300])).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([int(h[0]), int(h[5])])
    unique = hash_strings(pa.array([f"doc-{i:09d}" for i in range(200_000)]))
    assert len(np.unique(unique)) == 200_000
    # copied columns: by value, whatever the width of the type; nulls apart from zeros
    assert hash_values(pa.array([5, None, 0], pa.int32())).tolist() == hash_values(pa.array([5, None, 0])).tolist()
    assert len(set(hash_values(pa.array([5, None, 0])).tolist())) == 3
    assert hash_values(pa.array([1.5], pa.float32()))[0] == hash_values(pa.array([1.5]))[0]
    assert hash_values(pa.array([["a"], ["b"]]))[0] != hash_values(pa.array([["a"], ["b"]]))[1]  # by repr
    t = pa.table({"a": [1, 1, 2], "b": ["x", "y", "x"]})
    rows = hash_rows(t, ("a", "b"))
    assert len(set(rows.tolist())) == 3 and hash_rows(t, ("b", "a"))[0] != rows[0]
    assert hash_rows(t, ()).tolist() == [0, 0, 0]


def test_mrl_is_truncate_then_normalise_not_the_reverse():
    v = l2_normalize(np.array([[3.0, 4.0, 12.0]]))
    np.testing.assert_allclose(mrl_truncate(v, 2), [[0.6, 0.8]], rtol=1e-6)


def test_hashes_are_stable_and_sensitive():
    assert text_hash("abc") == text_hash("abc") != text_hash("abd")
    h = hash_strings(pa.array(["x", "x", "y"]))
    assert h[0] == h[1] != h[2]
    base = fingerprint(text_hash("t"), "m", "", "document", 64, 512)
    assert base == fingerprint(text_hash("t"), "m", "", "document", 64, 512)
    for changed in [
        fingerprint(text_hash("t2"), "m", "", "document", 64, 512),
        fingerprint(text_hash("t"), "m2", "", "document", 64, 512),
        fingerprint(text_hash("t"), "m", "i", "query", 64, 512),
        fingerprint(text_hash("t"), "m", "", "document", 32, 512),
        fingerprint(text_hash("t"), "m", "", "document", 64, 256),
    ]:
        assert changed != base


def test_cpu_engine_memory_grows_with_the_model():
    from operators.infer.engine import cpu_memory_fraction

    gib = 1 << 30
    assert cpu_memory_fraction(2_000_000, host_bytes=24 * gib) == 0.1  # tiny test model
    qwen06 = cpu_memory_fraction(1_200_000_000, host_bytes=24 * gib)
    assert 0.15 < qwen06 < 0.25  # ~3.6 GiB of a 16 GiB NUMA node: weights + runtime + KV
    assert cpu_memory_fraction(16_000_000_000, host_bytes=24 * gib) == 0.9


def test_the_engines_own_dtype_choice_is_not_warned_about_per_weight():
    """`dtype: auto` loads a float32 checkpoint as bfloat16 on CPU; vLLM would warn once per weight."""
    import inspect
    import logging

    from vllm.model_executor.models import utils as vllm_model_utils

    from operators.infer.engine import _OWN_DTYPE_CHOICE

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("vllm.model_executor.models.utils", logging.WARNING, "utils.py", 1, msg,
                                 ("encoder.layer.0.output.dense.weight", "torch.float32", "torch.bfloat16"), None)

    narrowing = "Attempted to load weight %s with dtype %s into parameter with dtype %s"
    # the installed vLLM still words it so (the filter matches its format string, not the rendered text)
    assert '"Attempted to load weight %s with dtype %s into "' in inspect.getsource(vllm_model_utils)
    assert not _OWN_DTYPE_CHOICE.filter(record(narrowing))
    assert _OWN_DTYPE_CHOICE.filter(record("Loading weights took %s seconds"))
