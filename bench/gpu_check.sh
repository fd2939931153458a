#!/usr/bin/env bash
# The whole GPU measurement as one prepared run, under 5 minutes on one GPU: bench/speed.py's table for both presets
# on CUDA, then the CUDA tests. Everything goes under ${OUT:-bench/gpu_out} (6 files).
#
#     bash bench/gpu_check.sh              # on the GPU machine
#     bash bench/gpu_check.sh --dry-run    # the same commands on CPU with --quick: no GPU needed (CI, tests)
#
# Environment: OUT (output folder), PYTHON (default .venv/bin/python where it exists, else python3),
# SPEED_PRESETS and SPEED_STAGES (space-separated; default all) narrow what bench/speed.py measures, SPEED_TIMEOUT
# (seconds) replaces its time limit.
#
# Files: speed.md (the table), speed.json (raw numbers, rewritten after every stage), speed.log (each stage's
# output and progress), pytest_cuda.txt, env.txt (GPU, Python, packages), summary.txt (exit code of each command).
#
# Sizes: each preset's own (configs/demo.yaml, configs/voc12.yaml; voc: BAS ResNet-50 crop 448 batch 16, seeds
# 375x500 at 4 scales, IRN ResNet-50 crop 512 batch 32, DeepLabV2-R101 MSC crop 321 batch 5), and the dense random
# walk at VOC size (--dense-voc). Assumed on an H200: every training step under ~1 s; the dense VOC walk ~1 s
# (8 squarings of an 11750^2 float32 matrix, ~3e13 FLOP, ~3 GB); the CRF (CPU, pydensecrf) ~1 s per 375x500
# image; ~10 s of process start per stage (torch, CUDA context, mmseg imports). With 2 warm-ups and 5 repeats
# that is ~3 minutes for the 14 stage processes: speed.py gets 240 s, the tests 60 s.
#
# The device image has torch but not mmseg/mmengine/mmcv, jsonschema or pydensecrf. When $PYTHON cannot import
# them and a carried .whl/ folder holds wheels for it, they are installed into /tmp/site first (pip --no-index).
# Without pydensecrf the CRF IR-label rows fail (FAILED in the table, the other rows are kept) and the DeepLab
# prediction row runs without its CRF (said in its notes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
OUT="${OUT:-bench/gpu_out}"
mkdir -p "$OUT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
: > "$OUT/summary.txt"
: > "$OUT/speed.log"
status=0

step() {  # step NAME SECONDS COMMAND...: run under a timeout, record its exit code, never stop the script
  local name=$1 limit=$2 rc=0
  shift 2
  timeout "$limit" "$@" || rc=$?
  echo "$name: exit $rc" >> "$OUT/summary.txt"
  return "$rc"
}

if [[ $DRY_RUN == 0 ]] && ! "$PYTHON" -c "import mmseg, mmengine, mmcv, jsonschema" 2>/dev/null \
    && compgen -G ".whl/*.whl" > /dev/null; then
  step install_wheels 120 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || status=1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

{
  echo "dry run: $DRY_RUN; python: $PYTHON"
  if [[ $DRY_RUN == 0 ]]; then nvidia-smi || true; fi
  "$PYTHON" - <<'EOF' || true
import importlib, sys, warnings
warnings.simplefilter("ignore")
print(sys.version)
for name in ("torch", "mmseg", "mmengine", "mmcv", "jsonschema", "pydensecrf"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "present"))
    except Exception as e:  # report, do not fail: speed.py says per stage what it could not run
        print(name, "MISSING:", type(e).__name__, e)
import torch
print("cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
} > "$OUT/env.txt" 2>&1

# 1. speed table
read -r -a presets <<< "${SPEED_PRESETS:-demo voc}"
read -r -a stages <<< "${SPEED_STAGES:-}"
speed=("$PYTHON" bench/speed.py --presets "${presets[@]}" --json-out "$OUT/speed.json" --log "$OUT/speed.log")
if [[ ${#stages[@]} -gt 0 ]]; then speed+=(--stages "${stages[@]}"); fi
if [[ $DRY_RUN == 1 ]]; then
  speed+=(--device cpu --threads 1 --quick)
  speed_limit=${SPEED_TIMEOUT:-300}
else
  speed+=(--device cuda --threads 8 --warmup 2 --repeats 5 --dense-voc)
  speed_limit=${SPEED_TIMEOUT:-240}
fi
step speed "$speed_limit" "${speed[@]}" > "$OUT/speed.md" 2>> "$OUT/speed.log" || status=1
if ! grep -q "^| stage" "$OUT/speed.md" && [[ -s "$OUT/speed.json" ]]; then  # cut short: the stages it finished
  "$PYTHON" bench/speed.py --render-json "$OUT/speed.json" > "$OUT/speed.md" 2>> "$OUT/speed.log" || true
fi
cat "$OUT/speed.md"

# 2. the CUDA tests (skipped, not failed, on a machine without CUDA); exit 5 = none collected
mapfile -t cuda_tests < <(grep -l -E "torch\.cuda\.is_available|mark\.cuda" tests/test_*.py || true)
if [[ ${#cuda_tests[@]} -gt 0 ]]; then
  rc=0
  step pytest_cuda 60 "$PYTHON" -m pytest -q -rs -p no:cacheprovider -k cuda "${cuda_tests[@]}" \
    > "$OUT/pytest_cuda.txt" 2>&1 || rc=$?
  if [[ $rc != 0 && $rc != 5 ]]; then status=1; fi
  tail -n 3 "$OUT/pytest_cuda.txt"
else
  echo "no test file mentions CUDA" > "$OUT/pytest_cuda.txt"
fi

cat "$OUT/summary.txt"
exit "$status"
