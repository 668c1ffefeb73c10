"""`model.adapter`: a LoRA adapter is read and checked against its base model from the safetensors headers,
and every way it can be wrong is an AdapterError that names the file and the fault."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from operators.infer.lora_adapter import WEIGHTS, AdapterError, base_shapes, check_adapter, safetensors_shapes
from tests.tiny_models import LORA_TARGETS, build_lora_adapter


def check(adapter, base, name=None, **kw):
    return check_adapter(str(adapter), base_shapes(base), name or str(base), **kw)


def test_an_adapter_from_peft_fits_the_tiny_qwen3(tiny_qwen3, tmp_path):
    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    spec = check(adapter, tiny_qwen3)
    assert (spec.rank, spec.alpha, spec.scale) == (8, 16.0, 2.0)
    assert spec.modules == 2 * len(LORA_TARGETS)  # two layers, seven projections each
    assert spec.target_modules == LORA_TARGETS and spec.base_model == str(tiny_qwen3)


def test_an_adapter_trained_on_the_causal_lm_wrapper_fits_too(tiny_qwen3, tmp_path):
    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3, prefix="base_model.model.model.")
    assert check(adapter, tiny_qwen3).modules == 2 * len(LORA_TARGETS)


def test_the_content_hash_follows_the_weights_not_the_path(tiny_qwen3, tmp_path):
    one = check(build_lora_adapter(tmp_path / "a", tiny_qwen3, seed=1), tiny_qwen3)
    same = check(build_lora_adapter(tmp_path / "b", tiny_qwen3, seed=1), tiny_qwen3)
    other = check(build_lora_adapter(tmp_path / "c", tiny_qwen3, seed=2), tiny_qwen3)
    assert one.content_hash == same.content_hash != other.content_hash


def test_missing_files_are_named(tiny_qwen3, tmp_path):
    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="missing adapter_model.safetensors"):
        check(adapter, tiny_qwen3)
    with pytest.raises(AdapterError, match="no such folder"):
        check(tmp_path / "nowhere", tiny_qwen3)


def edit_config(adapter: Path, **changes) -> None:
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **changes}))


def test_an_adapter_that_is_not_lora_is_refused(tiny_qwen3, tmp_path):
    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    edit_config(adapter, peft_type="IA3")
    with pytest.raises(AdapterError, match="peft_type is 'IA3', not LORA"):
        check(adapter, tiny_qwen3)


def test_shapes_that_do_not_fit_the_base_model_are_named(tiny_qwen3, tmp_path):
    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    edit_config(adapter, r=4)  # the matrices are rank 8
    want = r"layers.0.mlp.down_proj is 128x256 in the base model, but the adapter's A is 8x256 and B 128x8 \(want 4x256"
    with pytest.raises(AdapterError, match=want):
        check(adapter, tiny_qwen3)


def test_a_module_the_base_model_lacks_is_named(tiny_qwen3, tmp_path):
    from safetensors.numpy import save_file

    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    tensors = {"base_model.model.layers.0.cross_attn.q_proj.lora_A.weight": np.ones((8, 128), np.float32),
               "base_model.model.layers.0.cross_attn.q_proj.lora_B.weight": np.ones((256, 8), np.float32)}
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="targets layers.0.cross_attn.q_proj, which the base model does not have"):
        check(adapter, tiny_qwen3)


def test_an_adapter_on_the_output_head_is_refused(tiny_qwen3, tmp_path):
    """Not served by vLLM on a pooling model; a reranker's head is rebuilt as the yes/no classifier."""
    from safetensors.numpy import save_file

    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    save_file({"base_model.model.lm_head.lora_A.weight": np.ones((8, 128), np.float32),
               "base_model.model.lm_head.lora_B.weight": np.ones((1024, 8), np.float32)},
              str(adapter / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="targets lm_head, the output head"):
        check(adapter, tiny_qwen3)


def test_half_a_pair_and_other_trained_weights_are_refused(tiny_qwen3, tmp_path):
    from safetensors.numpy import save_file

    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    save_file({"base_model.model.layers.0.mlp.up_proj.lora_A.weight": np.ones((8, 128), np.float32)},
              str(adapter / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="has lora_A but no lora_B"):
        check(adapter, tiny_qwen3)
    save_file({"base_model.model.lm_head.weight": np.ones((4, 128), np.float32)},
              str(adapter / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="'base_model.model.lm_head.weight' is not a LoRA A/B matrix"):
        check(adapter, tiny_qwen3)


def test_an_adapter_for_another_base_model_is_refused_unless_told(tiny_qwen3, tmp_path):
    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3, base_name="Qwen/Qwen3-Embedding-4B")
    with pytest.raises(AdapterError, match="trained on 'Qwen/Qwen3-Embedding-4B', not model.name"):
        check(adapter, tiny_qwen3, "Qwen/Qwen3-Embedding-0.6B")
    # a local copy of the same hub model: compared by its last path part
    ok = build_lora_adapter(tmp_path / "b", tiny_qwen3, base_name="Qwen/Qwen3-Embedding-0.6B")
    assert check(ok, tiny_qwen3, "/models/Qwen3-Embedding-0.6B").modules
    assert check(adapter, tiny_qwen3, "x", base_check=False).modules


def test_a_file_that_is_not_safetensors_is_named(tmp_path):
    bad = tmp_path / "adapter_model.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"not json")
    with pytest.raises(AdapterError, match="not a safetensors file"):
        safetensors_shapes(bad)


def test_vllm_serves_the_adapter_at_the_next_rank_it_sizes_for():
    from operators.infer.lora_adapter import lora_rank_slot

    assert [lora_rank_slot(r) for r in (1, 2, 8, 9, 64, 300)] == [1, 8, 8, 16, 64, 320]
    with pytest.raises(AdapterError, match="rank 600 is above"):
        lora_rank_slot(600)


def test_the_payload_is_written_once_per_node_by_content_hash(tiny_qwen3, tmp_path):
    spec = check(build_lora_adapter(tmp_path / "a", tiny_qwen3), tiny_qwen3)
    payload = spec.payload()
    first = payload.materialize(str(tmp_path / "node"))
    assert payload.materialize(str(tmp_path / "node")) == first  # a second actor reuses it
    assert check(first, tiny_qwen3).content_hash == spec.content_hash
    assert check(first, tiny_qwen3).content_hash == spec.content_hash
    assert not list((tmp_path / "node" / "batch_embed_adapters").glob(".staging-*"))


@pytest.mark.s3
def test_an_adapter_in_s3_is_copied_once_and_checked(s3_endpoint, tiny_qwen3, tmp_path):
    import s3fs

    from jobs.core.adapters import local_adapter
    from jobs.core.config import ConfigError

    adapter = build_lora_adapter(tmp_path / "a", tiny_qwen3)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir("models")
    fs.put(str(adapter / "adapter_config.json"), "models/lora/adapter_config.json")
    fs.put(str(adapter / WEIGHTS), f"models/lora/{WEIGHTS}")
    options = {"endpoint_url": s3_endpoint}
    cache = tmp_path / "cache"
    local = local_adapter("s3://models/lora/", options, "model.adapter", cache)
    assert check(local, tiny_qwen3).content_hash == check(adapter, tiny_qwen3).content_hash
    assert local_adapter("s3://models/lora", options, "model.adapter", cache) != local  # keyed by the URI as given
    stamp = (local / WEIGHTS).stat().st_mtime_ns
    assert local_adapter("s3://models/lora/", options, "model.adapter", cache) == local  # not fetched again
    assert (local / WEIGHTS).stat().st_mtime_ns == stamp
    fs.rm(f"models/lora/{WEIGHTS}")
    with pytest.raises(ConfigError, match=f"model.adapter: s3://models/lora/: missing {WEIGHTS}"):
        local_adapter("s3://models/lora/", options, "model.adapter", tmp_path / "cache2")


def test_queries_are_embedded_with_the_tables_own_adapter(tiny_qwen3, tmp_path):
    """What a table records finds its adapter again (eval, rerank, mine); a moved adapter is named by
    `<section>.adapter`; a changed one, or one for a table without, is an error naming that setting."""
    from jobs.core.adapters import recorded_uri, table_adapter
    from jobs.core.config import ConfigError
    from operators.infer.model_spec import load_model_spec

    model = load_model_spec(str(tiny_qwen3))
    first = build_lora_adapter(tmp_path / "v1", tiny_qwen3, seed=1)
    spec = check_adapter(str(first), base_shapes(tiny_qwen3), str(tiny_qwen3))
    recorded = {"model": str(tiny_qwen3), "adapter": spec.content_hash, "adapter_uri": recorded_uri(str(first))}
    assert table_adapter(recorded, None, {}, model, "table.adapter").content_hash == spec.content_hash
    assert table_adapter({"model": "m"}, None, {}, model, "table.adapter") is None

    moved = tmp_path / "moved"
    first.rename(moved)
    with pytest.raises(ConfigError, match="table.adapter: .*no such folder"):
        table_adapter(recorded, None, {}, model, "table.adapter")
    assert table_adapter(recorded, str(moved), {}, model, "table.adapter").content_hash == spec.content_hash

    other = build_lora_adapter(tmp_path / "v2", tiny_qwen3, seed=2)
    with pytest.raises(ConfigError, match=f"candidates.adapter: .* but the table was embedded with adapter "
                                          f"{spec.content_hash}"):
        table_adapter(recorded, str(other), {}, model, "candidates.adapter")
    with pytest.raises(ConfigError, match="table.adapter: the table was embedded without a LoRA adapter"):
        table_adapter({"model": "m"}, str(other), {}, model, "table.adapter")
    with pytest.raises(ConfigError, match="whose location it does not record; give its folder as table.adapter"):
        table_adapter({"model": "m", "adapter": spec.content_hash}, None, {}, model, "table.adapter")


def test_a_reranker_adapter_is_checked_under_its_own_section(tiny_qwen3, tmp_path):
    """rerank's `model.adapter`, eval's and mine's `reranker.adapter`: checked at plan time, errors naming the
    section; a good one reaches the reranker's engine spec (vLLM's LoRA on the yes/no classifier model)."""
    from jobs.core.config import ConfigError
    from jobs.core.models import reranker_model
    from jobs.core.sections import EngineConfig, RerankModelConfig

    good = build_lora_adapter(tmp_path / "good", tiny_qwen3, prefix="base_model.model.model.")
    cfg = RerankModelConfig(name=str(tiny_qwen3), max_tokens=160, adapter=str(good))
    ranker = reranker_model(cfg, "reranker")
    assert ranker.adapter_hash == check(good, tiny_qwen3).content_hash
    spec = ranker.spec(cfg, EngineConfig(), 0)
    assert spec.engine.adapter.content_hash == ranker.adapter_hash and spec.engine.hf_overrides
    assert reranker_model(cfg.model_copy(update={"adapter": None})).adapter is None

    with pytest.raises(ConfigError, match="reranker.adapter: .*missing adapter_config.json, adapter_model.safetensors"):
        reranker_model(cfg.model_copy(update={"adapter": str(tmp_path)}), "reranker")
    other = build_lora_adapter(tmp_path / "other", tiny_qwen3, base_name="Qwen/Qwen3-Reranker-4B")
    with pytest.raises(ConfigError, match="model.adapter: .*not model.name .*set model.adapter_base_check: false"):
        reranker_model(cfg.model_copy(update={"adapter": str(other)}))
    assert reranker_model(cfg.model_copy(update={"adapter": str(other), "adapter_base_check": False})).adapter
