"""Cluster submission: `job` validates a config, then submits and follows it through cluster/submit.py."""
