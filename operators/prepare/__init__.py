"""Prepare: per-row work before the engines (validation, duplicate ids, the sync diff, tokenising)."""
