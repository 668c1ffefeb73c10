"""The hard-negative mining job: `job` (command and run), `config`, `plan`, `pipeline`, `summary`."""
