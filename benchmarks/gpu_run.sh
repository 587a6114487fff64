#!/usr/bin/env bash
# Issue 10's device checks, as run on a lent GPU machine that has CUDA torch but no PyPI access and
# none of the embedded models. Prepare here first:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     transformers huggingface_hub httpx2 httpcore2 truststore hf-xet kernels tomlkit trl peft datasets \
#     dill multiprocess gguf accelerate tokenizers fsspec typer      (at the versions .venv holds), and
#   python benchmarks/opct_step.py --export-stand-ins .standin
# Then, on the GPU machine, from the repository root: bash benchmarks/gpu_run.sh
# Writes gpu_tests.log and gpu_bench.log to $OUT (default ./gpu-out).
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi -L
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, torch.cuda.get_device_name())"
# The tiny-model trainer tests: the trainers move the model to the GPU themselves.
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -q -m "not slow" -p no:cacheprovider -rfE \
  tests/trainers tests/test_generation.py tests/test_prefix.py tests/test_losses.py tests/test_models.py \
  2>&1 | tee "$OUT/gpu_tests.log" | tail -60
timeout "${BENCH_TIMEOUT:-330}" python3 benchmarks/opct_step.py --device cuda --stand-ins .standin \
  --only opct,trl-sdft --shapes "${SHAPES:-4x2,2x8,8x8}" --steps 3 --mem-limit-gb 0 --timeout 150 \
  2>&1 | tee "$OUT/gpu_bench.log"
