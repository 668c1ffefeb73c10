"""The evaluation job: `job` (command and run), `config`, `plan`, `pipeline`, `metrics`, `summary`."""
