"""Cluster start-up and job submission helpers."""
