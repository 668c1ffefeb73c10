"""The shared core every job uses: command plumbing, config base and shared sections, input planning,
batch sizing, engine pools, the committed run, paths, summaries and reports, redaction, the job catalog."""
