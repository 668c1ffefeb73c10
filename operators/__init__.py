"""Ray Data operators, one folder per pipeline stage, one operator (or pure helper) per module.

read/     Parquet shards and pair files as Ray Data sources, with retries on flaky storage
prepare/  per-row checks before the engines: validation, duplicate ids, sync diff, tokenising
infer/    the vLLM engines (embedder, reranker) and their pure prompt, batching and Matryoshka math
retrieve/ exact top-k over a vector table, hard-negative selection
write/    Lance fragment writers, the single committer, the run ledger, the table lock, upkeep

Importing any of it needs neither vLLM nor torch; each operator imports its heavy
dependencies inside `__init__`, on the worker that runs it.
"""
