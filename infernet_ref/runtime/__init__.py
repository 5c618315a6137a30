"""Inference runtime: Llama-family models, paged KV cache, TP and pipeline stages (spec/runtime.md)."""
