"""Provenance a nightly table can be trusted by: the model's revision and the engines' dtype(s).

Before: the table recorded the model's name only, so new weights under the same name (a re-downloaded
hub snapshot, a fine-tuned folder saved over the old one) mixed two models' vectors silently; and
`dtype: auto` was decided per engine node, so one run could write bf16 and fp32 vectors unrecorded.
"""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pytest

from jobs.core.config import ConfigError
from operators.infer.model_revision import folder_revision, model_revision
from operators.prepare.fingerprints import Provenance
from tests.conftest import job_config, run_job, write_shards
from tests.corpus import documents


def test_a_folder_revision_follows_its_weights_not_its_name(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"weights v1")
    (model / "tokenizer.json").write_text("{}")
    cache = tmp_path / "cache.json"
    first = folder_revision(model, cache)
    assert first.startswith("content:") and folder_revision(model, cache) == first
    (model / "tokenizer.json").write_text('{"changed": true}')  # not weights: same revision
    assert folder_revision(model, cache) == first
    (model / "model.safetensors").write_bytes(b"weights v2")
    assert folder_revision(model, cache) != first
    assert json.loads(cache.read_text())  # cached by names, sizes and mtimes


def test_a_hub_snapshot_path_is_its_commit():
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert model_revision(f"/cache/models--Qwen--Qwen3-Embedding-0.6B/snapshots/{sha}") == f"hub:{sha}"


def test_the_revision_is_part_of_the_fingerprint_only_when_known():
    base = dict(model="m", instruction="", input_type="document", dimensions=8, max_tokens=16)
    legacy = Provenance(**base)
    a, b = Provenance(**base, revision="content:a"), Provenance(**base, revision="content:b")
    assert len({legacy.fingerprint("t"), a.fingerprint("t"), b.fingerprint("t")}) == 3
    from operators.prepare.fingerprints import fingerprint

    assert legacy.fingerprint("t") == fingerprint("t", "m", "", "document", 8, 16)  # tables before revisions


def perturb(model_dir):
    """New weights under the same folder name: what a fine-tune saved over the old one looks like."""
    import torch
    from safetensors.torch import load_file, save_file

    f = next(model_dir.glob("*.safetensors"))
    tensors = load_file(str(f))
    name = next(k for k in tensors if "layers.0.mlp" in k)
    tensors[name] = tensors[name] + 0.05 * torch.ones_like(tensors[name])
    save_file(tensors, str(f), metadata={"format": "pt"})


@pytest.mark.engine
def test_new_weights_are_a_recipe_change_and_dtypes_are_recorded(tiny_qwen3, ray_session, tmp_path):
    import lance

    from operators.write.lance_sink import read_provenance

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen3, model)
    rows = documents(12)
    src = write_shards(tmp_path / "src", [pa.table({"id": [i for i, _ in rows], "text": [t for _, t in rows]})])
    raw = job_config(src, tmp_path / "db", model, sink={"mode": "sync"})  # dtype float32 (conftest)
    first = run_job(raw)
    assert first.engine_dtype == "float32"
    uri = str(tmp_path / "db" / "docs.lance")
    prov = read_provenance(lance.dataset(uri).schema)
    assert prov["dtypes"] == ["float32"] and prov["revision"] == model_revision(str(model))

    perturb(model)
    append = job_config(src, tmp_path / "db", model, sink={"mode": "append"})
    with pytest.raises(ConfigError, match=r"model.name: .* at revision content:\w+, this run would load revision"):
        run_job(append)
    again = run_job(raw)  # sync: every row re-embedded with the new weights
    assert (again.rows_changed, again.rows_unchanged) == (len(rows), 0)
    assert read_provenance(lance.dataset(uri).schema)["revision"] == model_revision(str(model))

    # Another dtype on the same table: allowed, said, and recorded next to the first.
    more = rows + [(f"new-{i}", f"Fresh text number {i}.") for i in range(3)]
    src2 = write_shards(tmp_path / "src2", [pa.table({"id": [i for i, _ in more], "text": [t for _, t in more]})])
    bf16 = job_config(src2, tmp_path / "db", model, sink={"mode": "sync"}, model={"dtype": "bfloat16"})
    mixed = run_job(bf16)
    assert (mixed.rows_new, mixed.rows_unchanged, mixed.engine_dtype) == (3, len(rows), "bfloat16")
    assert "float32 vectors and this run writes bfloat16" in mixed.dtype_note and "DTYPES" in mixed.render()
    assert read_provenance(lance.dataset(uri).schema)["dtypes"] == ["bfloat16", "float32"]
