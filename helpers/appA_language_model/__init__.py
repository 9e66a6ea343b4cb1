"""Appendix A: the course's techniques on a small decoder-only language model (prefill, decode, KV cache, batching)."""
