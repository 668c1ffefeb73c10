"""The reranking job: `job` (command and run), `config`, `plan`, `pipeline`, `summary`."""
