"""The upkeep job: `job` (config, command and run)."""
