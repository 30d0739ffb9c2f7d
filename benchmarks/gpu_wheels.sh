#!/usr/bin/env bash
# Gathers into .whl/ (ignored by git) the wheels the GPU machine needs beyond its image, for Python 3.12 on x86-64
# Linux, so that benchmarks/gpu_tier.sh runs there without network (carry: [".whl"]; see benchmarks/README.md).
#
# The image has torch 2.11 with CUDA, numpy, pyarrow, tokenizers, safetensors, typer, rich, tabulate, psutil,
# nvidia-ml-py, PyYAML, scipy and transformers (with huggingface_hub, jinja2 ...). A local trial on a prepared cache
# needs beyond those only what is pinned below: the versions the test suite runs with here. Ray, datasets, lm-eval,
# codecarbon, sacrebleu and torchao are not needed (imported only where used; tests/test_local_executor.py checks).
# typing-extensions is carried because pydantic-core needs a newer one than torch's image may have.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
    pytorch-optimizer==4.1.0
    platformdirs==4.14.9
    py-cpuinfo==9.0.0
)
rm -rf .whl
mkdir -p .whl
for wheel in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$wheel"
done
ls -l .whl
du -sh .whl
size=$(du -sb .whl | cut -f1)
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
    echo "gpu_wheels.sh: .whl is $size bytes, over the 64 MiB a device call carries" >&2
    exit 1
fi
