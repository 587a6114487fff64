"""Defaults shared across modules, free of heavy imports (the CLI imports them without torch)."""

# Rows per `generate` call in evaluations and judges. On this 2-core CPU decoding is bound by per-step
# overhead and weight reads, not by rows: 96 answers of 64 tokens took SmolLM2 36 s at 8 rows per call
# and 14 s at 32; 64 answers of 32 tokens took Qwen2.5-Coder-1.5B 74 s and 24 s (2026-12-04).
DECODE_BATCH = 32
