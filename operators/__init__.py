"""Ray Data operators of the embedding job: one operator per module.

Importing this package needs neither vLLM nor torch; each operator imports its
heavy dependencies inside `__init__`, on the worker that runs it.
"""
