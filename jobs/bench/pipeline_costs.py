"""What the pipeline around the engines costs: a one-process floor, and the CPU cost of each stage.

- `floor`: the least any pipeline must do with the corpus, in one process with no Ray and no
  checks: read the Parquet, tokenise with the same Rust tokenizer on every core, make vectors
  of the model's width (the simulated engine's function, as the job's ceiling run uses) and
  write them to one Lance table. The job with unlimited simulated engines (`ceiling`) is
  measured against it: what Ray, validation, exactly-once and commits cost on top.
- `stages`: the job's own operators run one after the other in this process on the same rows,
  CPU seconds per stage (read, validate, ids, tokenise, write, commit), and from them how many
  CPU cores keep one GPU fed: an H100 running Qwen3-Embedding-0.6B at 50% of its bf16 peak.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jobs.bench.report import flops_per_token

# Qwen3-Embedding-0.6B's config.json (the hub's), for the projection without the weights.
QWEN3_EMBEDDING_06B = {"hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
                       "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072, "hidden_act": "silu"}
H100_BF16_DENSE_FLOPS = 989e12  # H100 SXM, dense bf16 (NVIDIA's datasheet; 1,979 with sparsity)
GPU_EFFICIENCY = 0.5


def _model(case: dict[str, Any]) -> tuple[Any, int]:
    from operators.infer.model_spec import effective_max_tokens, load_model_spec

    model = load_model_spec(case["model"])
    return model, effective_max_tokens(model, case["max_tokens"])


def run_floor(case: dict[str, Any]) -> dict[str, Any]:
    import lance
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    from operators.infer.simulated_engine import simulated_vectors

    model, max_tokens = _model(case)
    tok = Tokenizer.from_file(str(Path(model.path) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_tokens)
    width = model.hidden_size or 1
    tokens = 0

    def batches():
        nonlocal tokens
        for shard in sorted(Path(case["corpus"]).glob("*.parquet")):
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=4096, columns=["id", "text"]):
                ids = [e.ids for e in tok.encode_batch(batch.column("text").to_pylist())]  # every core
                tokens += sum(len(x) for x in ids)
                vectors = simulated_vectors(ids, width)
                yield pa.record_batch([batch.column("id"), pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1)), width)], names=["id", "vector"])

    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), width))])
    reader = pa.RecordBatchReader.from_batches(schema, batches())
    ds = lance.write_dataset(reader, str(Path(case["workdir"]) / "floor.lance"), mode="overwrite")
    return {"rows": ds.count_rows(), "tokens": tokens}


def _embed_plan(case: dict[str, Any]) -> Any:
    from jobs.core import catalog
    from jobs.core.config import parse_config

    embed = catalog.job("embed")
    raw = {"source": {"uri": case["corpus"]}, "model": {"name": case["model"], "max_tokens": case["max_tokens"]},
           "engine": {"backend": "simulated"},
           "sink": {"uri": str(Path(case["workdir"]) / "lancedb"), "table": "stages", "mode": "overwrite"}}
    return embed.plan(parse_config(raw, embed.CONFIG))


def run_stages(case: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds of each stage of the job on the corpus, its operators called in this one process."""
    import lance
    import numpy as np
    import pyarrow as pa

    from operators.infer.simulated_engine import simulated_vectors
    from operators.prepare.fingerprints import hash_strings
    from operators.prepare.id_registry import IdRegistry
    from operators.prepare.input_tokenizer import InputTokenizer
    from operators.prepare.row_validator import RowValidator
    from operators.read.parquet_source import ParquetShardSource
    from operators.write.lance_sink import LanceFragmentWriter

    plan = _embed_plan(case)
    src = plan.config.source
    spec = plan.embedder_spec(0.0, "simulated")
    cpu = dict.fromkeys(("read", "validate", "ids", "tokenise", "write", "commit"), 0.0)

    def timed(stage: str, fn: Any, *args: Any) -> Any:
        t = time.process_time()
        out = fn(*args)
        cpu[stage] += time.process_time() - t
        return out

    source = ParquetShardSource(plan.fs, plan.shards, src.id_column, src.text_column, src.columns)
    validator = RowValidator(IdRegistry(), {s.path: i for i, s in enumerate(plan.shards)}, plan.provenance)
    tokenizer, writer, ids_registry = InputTokenizer(spec), LanceFragmentWriter(plan.target.sink), IdRegistry()
    rows = tokens = sum_sq = 0
    uri, version = plan.target.sink.main_uri, None
    for task in source.get_read_tasks(1):
        for block in timed("read", lambda t=task: list(t())):
            rows += block.num_rows
            # the id half of validation on its own: hashes + registry claims (also inside `validate`)
            timed("ids", lambda b=block: ids_registry.claim(hash_strings(b.column("id")),
                                                            np.arange(b.num_rows, dtype=np.uint64)))
            checked = timed("validate", validator, block)
            staged = timed("tokenise", tokenizer, checked)
            ids = staged.column("token_ids").to_pylist()
            tokens += sum(len(x or []) for x in ids)
            sum_sq += sum(len(x or []) ** 2 for x in ids)
            vectors = simulated_vectors([x or [0] for x in ids], spec.dimensions)
            batch = staged.drop_columns(["token_ids"]).append_column("vector", pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1)), spec.dimensions)).append_column(
                "n_tokens", pa.array([len(x or []) for x in ids], pa.int32()))
            reports = timed("write", writer, batch)
            frags = [lance.FragmentMetadata.from_json(f) for r in reports.column("fragments").to_pylist()
                     for f in _fragment_jsons(r)]
            op = (lance.LanceOperation.Append(frags) if version is not None
                  else lance.LanceOperation.Overwrite(plan.target.sink.schema, frags))
            version = timed("commit", lambda o=op, v=version: lance.LanceDataset.commit(uri, o, read_version=v)).version
    return {"rows": rows, "tokens": tokens, "context": sum_sq / max(tokens, 1),
            "cpu_s": {k: round(v, 3) for k, v in cpu.items()}}


def _fragment_jsons(text: str) -> list[str]:
    import json

    return [json.dumps(f) for f in json.loads(text)]


def gpu_projection(stages: dict[str, Any], context: float) -> dict[str, Any]:
    """CPU cores one H100 running Qwen3-Embedding-0.6B needs to stay fed, from the stages' CPU cost per token
    (on this machine's cores; a GPU node's are usually faster)."""
    per_token = sum(v for k, v in stages["cpu_s"].items() if k != "ids") / max(stages["tokens"], 1)
    rate = GPU_EFFICIENCY * H100_BF16_DENSE_FLOPS / flops_per_token(QWEN3_EMBEDDING_06B, context, causal=True)
    return {"gpu": "H100 SXM", "model": "Qwen/Qwen3-Embedding-0.6B", "efficiency": GPU_EFFICIENCY,
            "context_tokens": round(context, 1), "gpu_tokens_per_s": round(rate), "cpu_us_per_token":
            round(per_token * 1e6, 3), "cores_to_feed": round(rate * per_token, 1)}
