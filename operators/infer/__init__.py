"""Infer: one vLLM engine per actor (embedder, reranker), and the pure prompt, batching and Matryoshka math."""
