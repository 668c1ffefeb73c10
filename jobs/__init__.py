"""Entry points: parse the CLI, load the config, build the pipeline, run it, print the summary."""
