#!/usr/bin/env bash
# The GPU check, for the day a GPU is lent: one command, <= 5 minutes on one H100/H200.
#
#     bash benchmarks/gpu_check.sh                       # on a CUDA machine (or anywhere)
#     GPU_PEAK_TFLOPS=756 bash benchmarks/gpu_check.sh   # a GPU benchmarks/gpu_check.py's table lacks
#     bash benchmarks/gpu_check.sh --threads 8           # options are benchmarks/gpu_check.py's
#     PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh   # the interpreter (default: python)
#
# 1. The CUDA agreement tests (tests/test_cuda.py and the two CUDA probe tests of
#    tests/test_probe.py): bf16 word vectors on CUDA against fp32 ones (cosine >= 0.99 each),
#    POS probe accuracy on the two caches (within 1 point per layer), BPC, SimAlign and XNLI
#    features on CUDA against the CPU, the CUDA probe fits against the CPU ones.
# 2. benchmarks/gpu_check.py: extraction tokens/s of a random XLM-R-base-sized model as a
#    fraction of the bf16 roofline, and the CUDA probe's fitting time against scikit-learn's.
#
# Exit status: 1 when a test fails or a measurement does not run, else 0. Without CUDA
# (torch.cuda.is_available() is False) each CUDA part is one "SKIP: ..." line; the tests are
# still collected (they skip) and gpu_check.py runs its CPU parts at --quick sizes (< 2 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
NO_CUDA="needs a CUDA device (torch.cuda.is_available() is False)"
CUDA_TESTS=(
    tests/test_cuda.py
    tests/test_probe.py::test_cuda_fit_matches_the_cpu_fit
    tests/test_probe.py::test_cuda_grid_search_matches_the_cpu_one
)
# the one test in tests/test_cuda.py that runs this script: never from here
SELF_TEST=tests/test_cuda.py::test_gpu_check_runs_without_cuda_and_says_what_it_skips

status=0
if "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    options=()
    echo "== CUDA agreement tests =="
else
    options=(--quick)
    echo "== CUDA agreement tests (collected; each skips) =="
    echo "SKIP: CUDA agreement tests (bf16 vs fp32 extraction, probes, BPC, SimAlign, XNLI) — $NO_CUDA"
fi
"$PYTHON" -m pytest -q -p no:cacheprovider "${CUDA_TESTS[@]}" --deselect "$SELF_TEST" || status=1

echo
echo "== measurements (benchmarks/gpu_check.py) =="
"$PYTHON" benchmarks/gpu_check.py "${options[@]}" "$@" || status=1

echo
if [ "$status" -eq 0 ]; then echo "gpu_check: OK"; else echo "gpu_check: FAILED"; fi
exit "$status"
