"""The jobs: one package per job, each parsing its config, composing operators and running them.

core/        what every job shares (command plumbing, config base, input planning, batch sizing,
             engine pools, the committed run, paths, summaries and reports, the job catalog)
embed/       Parquet shards -> vectors in a LanceDB table (create, overwrite, append, sync)
rerank/      (query, document) pairs or queries + a vector table -> reranked pairs in a table
eval/        retrieval quality of a vector table per Matryoshka size
mine/        hard negatives for (query, positive) pairs -> ms-swift JSONL
maintain/    table upkeep on its own
bench/       the benchmark against the raw engine, ray.data.llm and a naive loop
demo_corpus/ the offline demo corpus
submit/      submit / status / logs on a Ray cluster
cli.py       the `batch-embed` command

A job imports the core and operators, never another job (jobs/core/catalog.py bridges them).
"""
