"""The embedding job: `job` (command and run), `config`, `plan`, `pipeline`, `summary`."""
