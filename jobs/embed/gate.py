"""Eval-gated publishing (`gate:`, for `sink.mode: overwrite`): a rebuilt table becomes the one readers see only
if its retrieval quality on judged queries passes.

After every row is written the rebuild is committed as a detached version of the table (a Lance version
that is not the table's latest, so readers and `batch-embed eval` without a version keep the current one),
its judged queries are ranked and scored exactly as `batch-embed eval` does (jobs/core/ranking.py,
jobs/core/metrics.py), and so is the current table when `max_drop` asks for the comparison. Pass: the same
fragments are committed as the table's next version (metadata only). Fail: exit code 6, the current table
untouched, the candidate kept as that detached version until the next run that writes the table finishes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from pydantic import Field, field_validator, model_validator

from jobs.core.config import ConfigError, StrictModel
from jobs.core.metrics import check_metric, depth, judged_queries
from jobs.core.qrels import Qrels, read_qrels
from jobs.core.sections import QrelsConfig, QueriesConfig

log = logging.getLogger("batch_embed")

class GateConfig(StrictModel):
    queries: QueriesConfig = Field(description="Judged queries (Parquet), embedded as `batch-embed eval` would.")
    qrels: QrelsConfig = Field(description="Their relevance judgements (Parquet).")
    metric: str = Field("ndcg@10", description="Any metric `batch-embed eval` reports: <metric>@<cutoff>.")
    min: float | None = Field(None, ge=0, le=1, description="Absolute floor: the rebuilt table must score at least "
                              "this.")
    max_drop: float | None = Field(None, ge=0, le=1, description="At most this much below the table being "
                                   "replaced (evaluated on the same queries, with its own model and adapter).")
    dimensions: int | None = Field(None, ge=1, description="The Matryoshka size to evaluate at; default: the "
                                   "table's size.")

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        return check_metric(v)

    @model_validator(mode="after")
    def _a_bar(self) -> GateConfig:
        if self.min is None and self.max_drop is None:
            raise ValueError(".min: a gate needs a bar: min (absolute floor), max_drop (against the current "
                             "table), or both")
        return self


@dataclass
class GatePlan:
    config: GateConfig
    fs: Any
    shards: list  # the queries' shards
    qrels: Qrels
    judged: set[str]
    dimensions: int
    query_chars: float


def plan_gate(gate: GateConfig | None, table_dims: int) -> GatePlan | None:
    """The gate's inputs, read and checked before anything is embedded (errors name `gate.*`)."""
    if gate is None:
        return None
    from jobs.core.inputs import input_shards, mean_chars, query_columns, sample_rows

    q = gate.queries
    fs, shards = input_shards(q.uri, q.storage_options, query_columns(q, "gate.queries"), "gate.queries.uri",
                              q.retry.policy())
    qrels = read_qrels(gate.qrels, "gate.qrels")
    judged = judged_queries(qrels.judgements)
    if not judged:
        raise ConfigError(f"gate.qrels.relevance_column: no judgement in {gate.qrels.uri} has relevance >= 1; "
                          "nothing to gate on")
    dims = gate.dimensions or table_dims
    if dims > table_dims:
        raise ConfigError(f"gate.dimensions: {dims} is larger than the table's {table_dims}-dimensional vectors")
    chars = mean_chars(sample_rows(fs, shards[0], [q.text_column]).column(0))
    return GatePlan(config=gate, fs=fs, shards=shards, qrels=qrels, judged=judged, dimensions=dims, query_chars=chars)


@dataclass
class GateVerdict:
    metric: str
    dimensions: int
    candidate: float  # the rebuilt table's score
    candidate_version: int  # its detached version (published: the table's next version is the same fragments)
    passed: bool
    reason: str
    min: float | None = None
    max_drop: float | None = None
    current: float | None = None  # the table being replaced, where max_drop compared with it
    current_version: int | None = None
    queries: int = 0  # judged queries evaluated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        verdict = "passed, published" if self.passed else f"FAILED ({self.reason}): not published"
        line = (f"gate           {self.metric} {self.candidate:.4f} ({self.dimensions} dims, {self.queries} queries): "
                f"{verdict}")
        if self.current is not None:
            line += f"\n               the replaced table (version {self.current_version}): {self.current:.4f}"
        if not self.passed:
            line += (f"\n               candidate kept as detached version {self.candidate_version} (inspect: "
                     f"batch-embed eval --set table.version={self.candidate_version}) until the next run that "
                     "writes the table")
        return line


def decide(cfg: GateConfig, candidate: float, current: float | None, current_error: str | None) -> tuple[bool, str]:
    """(passed, why): the bars of `cfg` against the candidate's score and the current table's."""
    if math.isnan(candidate):
        return False, f"{cfg.metric} could not be computed: no judged query was read"
    if cfg.min is not None and candidate < cfg.min:
        return False, f"{cfg.metric} {candidate:.4f} < {cfg.min} (gate.min)"
    if cfg.max_drop is not None:
        if current_error is not None:
            return False, f"gate.max_drop: the current table could not be evaluated ({current_error})"
        if current is not None and candidate < current - cfg.max_drop:
            return False, (f"{cfg.metric} {candidate:.4f} is {current - candidate:.4f} below the current table's "
                           f"{current:.4f} (gate.max_drop {cfg.max_drop})")
    return True, "every bar met"


def table_score(plan: GatePlan, db_uri: str, table: str, version: int, storage_options: dict[str, Any],
                engine: Any, gpus: float, dtype: str, ledger: Any = None) -> tuple[float, int]:
    """(the gate's metric, judged queries evaluated) for one version of a vector table, with its own recorded
    model, instruction and adapter; `engine`: the job's engine section."""
    from jobs.core.batching import rows_per_batch, text_tokens
    from jobs.core.engine_pool import engine_pool_args
    from jobs.core.metrics import evaluate
    from jobs.core.models import open_vector_table
    from jobs.core.ranking import collect, ranked_queries, ranking_columns
    from operators.retrieve.top_k import RetrievalSpec

    cfg = plan.config
    t = open_vector_table(table, db_uri, None, None, storage_options, 1, dtype, section="gate", version=version)
    dims = min(plan.dimensions, t.embedding.dimensions)
    retrieval = RetrievalSpec(uri=t.retrieval.uri, version=version, top_k=depth([cfg.metric]), dims=(dims,),
                              every_size=True, storage_options=t.retrieval.storage_options)
    embedder = replace(t.embedding.embedder_spec(gpus, engine), ledger=ledger)
    batch = rows_per_batch(engine.batch_tokens, text_tokens(plan.query_chars, t.embedding.max_tokens))
    ds = ranked_queries(plan.fs, plan.shards, cfg.queries, frozenset(plan.judged), embedder, batch, retrieval,
                        1024, engine_pool_args(engine, gpus))
    ranked = collect(ds.select_columns(ranking_columns([dims])), [dims])
    evaluated = {q: plan.qrels.judgements[q] for q in plan.judged if q in ranked.seen}
    return evaluate([cfg.metric], evaluated, ranked.by_dims[dims])[cfg.metric], len(evaluated)


def judge(plan: GatePlan, sink: Any, engine: Any, candidate_version: int, current_version: int | None,
          gpus: float, dtype: str, ledger: Any = None) -> GateVerdict:
    """Score the staged candidate (and the current table where max_drop compares with it) and decide; `sink`:
    the job's sink section, `engine` its engine section."""
    from operators import faults

    cfg = plan.config
    score, queries = table_score(plan, sink.uri, sink.table, candidate_version, sink.storage_options, engine, gpus,
                                 dtype, ledger)
    log.info("gate: candidate %s = %.4f on %d judged queries", cfg.metric, score, queries)
    current = error = None
    if cfg.max_drop is not None and current_version is not None:
        try:
            current, _ = table_score(plan, sink.uri, sink.table, current_version, sink.storage_options, engine, gpus,
                                     dtype, ledger)
            log.info("gate: current table (version %d) %s = %.4f", current_version, cfg.metric, current)
        except ConfigError as err:  # not our table, its adapter gone: no comparison, so no publishing
            error = str(err)
    passed, reason = decide(cfg, score, current, error)
    faults.point("after_gate")
    return GateVerdict(metric=cfg.metric, dimensions=plan.dimensions, candidate=score,
                       candidate_version=candidate_version, passed=passed, reason=reason, min=cfg.min,
                       max_drop=cfg.max_drop, current=current, current_version=current_version, queries=queries)
