"""Defaults shared across modules, free of heavy imports (the CLI imports them without torch)."""

# Rows per `generate` call in evaluations and judges. On this 2-core CPU decoding is bound by per-step
# overhead and weight reads, not by rows: 96 answers of 64 tokens took SmolLM2 38.6 s at 8 rows per call
# and 15.1 s at 32; 64 answers of 32 tokens took Qwen2.5-Coder-1.5B 66.9 s and 23.7 s
# (benchmarks/decode_batch.py, 2026-12-04).
DECODE_BATCH = 32
