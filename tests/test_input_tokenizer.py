"""The tokenizer stage (operators/prepare/input_tokenizer.py): same ids as the actor's AutoTokenizer, and the
Embedder's handling of staged ids (used, completed, or refused when they differ). No engine: fast tier."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from operators.infer.embedder import Embedder, EmbedderSpec, Tokenizer
from operators.infer.engine import EngineSpec
from operators.infer.engine_clock import EngineClock
from operators.infer.fast_tokenizer import FastTokenizer
from operators.infer.model_spec import ModelSpec, load_model_spec
from operators.prepare.input_tokenizer import InputTokenizer, token_ids_column

INSTRUCTION = "Given a question, retrieve passages that answer it"
TEXTS = [
    "def parse(x):\n    return int(x)",
    "",
    " ",
    "a text that literally ends in the end token <|endoftext|>",
    "chat markup <|im_start|>user\nhi<|im_end|> inside a document",
    "[CLS] bert specials [SEP] [MASK] as plain text",
    "Ünïcödé ÀÉÎ straße 東京 İstanbul ﬁ 🙂\t\ttabs",
    "word " * 400,  # cut to max_tokens
    "x" * 50_000,  # cut by characters before tokenising
]


def _spec(model: ModelSpec, input_type: str = "document", instruction: str = "", max_tokens: int = 48) -> EmbedderSpec:
    return EmbedderSpec(model=model, engine=EngineSpec(model_path=model.path, max_model_len=max_tokens),
                        input_type=input_type, instruction=instruction, max_tokens=max_tokens,
                        dimensions=model.hidden_size or 0, batch_tokens=4096)


@pytest.fixture(scope="module", params=["tiny-qwen3", "minilm"])
def model(request, tiny_qwen3, minilm_path) -> ModelSpec:
    return load_model_spec(str(tiny_qwen3 if request.param == "tiny-qwen3" else minilm_path))


@pytest.mark.parametrize("max_tokens", [8, 48, 256])
def test_same_ids_and_cuts_as_the_actor_tokenizer(model, max_tokens):
    fast = FastTokenizer.load(model, max_tokens)
    assert fast is not None
    reference = Tokenizer(model, max_tokens)
    ids, cut = fast.encode(TEXTS)
    want_ids, want_cut = reference.encode(TEXTS)
    assert ids == want_ids
    assert cut == want_cut
    assert any(cut) and not all(cut)
    if model.appends_end_token:
        assert all(x[-1] == reference.end_id for x in ids)


def batch(texts: list[str | None], actions: list[str | None]) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(len(texts))], "text": texts, "action": actions,
                     "reject_reason": [None if a else "null_text" for a in actions]})


def test_stage_tokenises_only_rows_to_embed(tiny_qwen3):
    model = load_model_spec(str(tiny_qwen3))
    spec = _spec(model, "query", INSTRUCTION, max_tokens=12)
    texts = ["first query", None, "unchanged row", "a much longer query " * 10]
    out = InputTokenizer(spec)(batch(texts, ["new", None, "unchanged", "changed"]))

    assert out.column_names[-2:] == ["token_ids", "truncated"]
    assert out.schema.field("token_ids").type == pa.list_(pa.int32())
    ids = out.column("token_ids").to_pylist()
    assert ids[1] is None and ids[2] is None
    want, want_cut = Tokenizer(model, 12).encode([f"Instruct: {INSTRUCTION}\nQuery:{t}" for t in (texts[0], texts[3])])
    assert [ids[0], ids[3]] == want
    assert out.column("truncated").to_pylist() == [want_cut[0], False, False, want_cut[1]]
    assert want_cut == [True, True]  # the instruction alone is longer than 12 tokens


def test_stage_leaves_ids_null_without_a_tokenizer_json(tiny_qwen3, tmp_path):
    folder = Path(shutil.copytree(tiny_qwen3, tmp_path / "model"))
    (folder / "tokenizer.json").unlink()
    spec = _spec(load_model_spec(str(folder)))
    out = InputTokenizer(spec)(batch(["one", "two"], ["new", "new"]))
    assert out.column("token_ids").null_count == 2
    assert out.column("truncated").to_pylist() == [False, False]


def test_token_ids_column_places_rows_and_nulls():
    col = token_ids_column(np.array([True, False, False, True, False]), ids=[[1, 2, 3], [7]])
    assert col.to_pylist() == [[1, 2, 3], None, None, [7], None]
    empty = token_ids_column(np.array([False, False]), ids=[])
    assert empty.to_pylist() == [None, None]


class _NoEngineEmbedder(Embedder):
    """The Embedder's input handling with a recording stand-in for the engine's `embed` (no vLLM)."""

    def __init__(self, spec: EmbedderSpec):
        self.spec = spec
        self.tokenizer = Tokenizer(spec.model, spec.max_tokens)
        self._staged_ok = None
        self.seen: list[list[int]] = []
        self.engine = self
        self.clock = EngineClock(None)  # timed, told to no ledger

    def embed(self, token_ids):
        import numpy as np

        self.seen.extend(token_ids)
        return np.ones((len(token_ids), 4), dtype=np.float32)

    def _check_dimensions(self, produced: int) -> None:
        pass


@pytest.fixture()
def tiny_spec(tiny_qwen3) -> EmbedderSpec:
    spec = _spec(load_model_spec(str(tiny_qwen3)))
    return EmbedderSpec(**{**spec.__dict__, "dimensions": 4})


def test_embedder_uses_staged_ids_and_fills_the_missing_ones(tiny_spec):
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    staged = InputTokenizer(tiny_spec)(batch(texts, ["new"] * 3))
    ids = staged.column("token_ids").to_pylist()
    ids[1] = None  # a worker without the fast tokenizer
    column = pa.array(ids, pa.list_(pa.int32()))
    staged = staged.set_column(staged.schema.get_field_index("token_ids"), "token_ids", column)

    embedder = _NoEngineEmbedder(tiny_spec)
    out = embedder(staged)
    want, _ = Tokenizer(tiny_spec.model, tiny_spec.max_tokens).encode(texts)
    assert sorted(embedder.seen) == sorted(want)
    assert embedder._staged_ok is True
    assert "token_ids" not in out.column_names
    assert out.column_names.count("truncated") == 1
    assert out.column("n_tokens").to_pylist() == [len(x) for x in want]


def test_embedder_refuses_staged_ids_that_differ(tiny_spec, caplog):
    texts = ["alpha beta", "gamma"]
    wrong = (batch(texts, ["new", "new"])
             .append_column("token_ids", pa.array([[5, 6, 7], [8]], pa.list_(pa.int32())))
             .append_column("truncated", pa.array([False, False])))
    embedder = _NoEngineEmbedder(tiny_spec)
    with caplog.at_level(logging.WARNING, logger="batch_embed"):
        embedder(wrong)
    want, _ = Tokenizer(tiny_spec.model, tiny_spec.max_tokens).encode(texts)
    assert sorted(embedder.seen) == sorted(want)
    assert embedder._staged_ok is False
    assert "model.name" in caplog.text and "tokenises every row itself" in caplog.text
    embedder.seen.clear()
    embedder(wrong)  # later batches: not trusted either
    assert sorted(embedder.seen) == sorted(want)


def test_a_hub_model_is_tokenised_in_the_tasks_from_the_snapshot_the_driver_read(tmp_path, monkeypatch, model):
    """A hub id (`org/name`) has no local folder on the workers: the driver reads tokenizer.json from its
    snapshot (here a real HF cache layout, offline) and ships the text; the tasks' ids are the folder's."""
    from dataclasses import replace

    from operators.prepare.input_tokenizer import shipped_tokenizer

    cache = tmp_path / "hub"
    snapshot = cache / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(Path(model.path) / "tokenizer.json", snapshot / "tokenizer.json")
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)

    hub_model = replace(model, path="org/tiny")
    text = shipped_tokenizer(hub_model)
    assert text == (Path(model.path) / "tokenizer.json").read_text()
    assert shipped_tokenizer(model) is None  # a local folder is read where it is
    assert shipped_tokenizer(replace(model, path="org/missing")) is None  # not cached, offline: actors tokenise

    texts = TEXTS[:4]
    staged = InputTokenizer(_spec(hub_model), text)(batch(texts, ["new"] * len(texts)))
    want, _ = Tokenizer(model, 48).encode(texts)
    assert staged.column("token_ids").to_pylist() == want
    unshipped = InputTokenizer(_spec(hub_model))(batch(texts, ["new"] * len(texts)))
    assert unshipped.column("token_ids").null_count == len(texts)  # before: every hub model, always


SIMULATED_ACTOR = """
import sys
from operators.infer.embedder import Embedder, EmbedderSpec
from operators.infer.engine import EngineSpec
from operators.infer.fast_tokenizer import FastTokenizer
from operators.infer.model_spec import load_model_spec
model = load_model_spec(sys.argv[1])
engine = EngineSpec(model_path=model.path, max_model_len=48, backend="simulated")
spec = EmbedderSpec(model=model, engine=engine, input_type="document", instruction="", max_tokens=48,
                    dimensions=model.hidden_size, batch_tokens=4096)
actor = Embedder(spec)
assert isinstance(actor.tokenizer, FastTokenizer), type(actor.tokenizer)
heavy = sorted(m for m in ("torch", "transformers", "vllm") if m in sys.modules)
assert not heavy, f"a simulated engine's actor imported {heavy}"
"""


@pytest.mark.parametrize("name", ["tiny-qwen3", "minilm"])
def test_a_simulated_engine_tokenises_with_the_stage_tokenizer_and_never_imports_torch(
        name, tiny_qwen3, minilm_path):
    """A dry run's engine actors must not spend the CPUs it measures on torch (transformers' AutoTokenizer
    imports it); the stage's tokenizer gives transformers' ids (the tests above), so its vectors hold."""
    import subprocess
    import sys

    path = str(tiny_qwen3 if name == "tiny-qwen3" else minilm_path)
    done = subprocess.run([sys.executable, "-c", SIMULATED_ACTOR, path], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
