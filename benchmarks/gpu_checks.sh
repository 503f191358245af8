#!/usr/bin/env bash
# The GPU checks of a session lent a GPU machine, in one call (see README,
# "Devices"): the suite's cupy variants and GPU end-to-end scene tests, then
# the recorded-run and tick benchmarks on cupy. Logs go to $OUT (or /tmp/gpu_out).
# Packages the machine lacks travel as wheels in .whl/ (array-api-compat,
# array-api-strict, mlxtend), installed into /tmp/site.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=".:/tmp/site" MPLBACKEND=Agg
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys, numpy, cupy; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'gpus', cupy.cuda.runtime.getDeviceCount())"
  nproc; } 2>&1 | tee "$OUT/machine.txt"
# Only the files with GPU variants: the others import packages (selenium, jax
# extras, dask) the machine may lack, and a collection error stops pytest.
FILES=${GPU_TEST_FILES:-"tests/test_gpu_scenes.py tests/test_cli.py tests/test_engine.py tests/test_facts.py
       tests/test_graph_engine.py tests/test_model_attention.py tests/test_model_graph.py
       tests/test_model_layers.py tests/test_model_pc.py tests/test_model_relaxation.py
       tests/test_relaxation.py tests/test_streams.py tests/test_probes.py"}
t0=$(date +%s)
timeout "${PYTEST_LIMIT:-300}" python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu" -ra \
  --durations=15 $FILES 2>&1 | tee "$OUT/pytest.log" | tail -40
echo "pytest: $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
timeout "${BENCH_LIMIT:-120}" python3 benchmarks/bench_run.py --device cuda ${BENCH_RUN_ARGS---quick} 2>&1 | tee "$OUT/bench_run_cuda.log"
timeout "${BENCH_LIMIT:-120}" python3 benchmarks/bench_gpu.py --quick 2>&1 | tee "$OUT/bench_gpu.log"
echo "benchmarks: $(( $(date +%s) - t0 )) s"
