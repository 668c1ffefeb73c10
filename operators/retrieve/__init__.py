"""Retrieve: exact top-k over a vector table at one or several Matryoshka sizes, and hard-negative selection."""
