#!/usr/bin/env bash
# The checks to run first in a session that is lent a GPU machine (the device tool's `run`): the
# test suite on that machine's own Python and torch, the CUDA path on the benchmark photos
# (compared with the CPU's pictures), and the speed benchmarks on CUDA against that machine's CPU.
# One command, about 8 minutes there; what comes back is under $OUT (7 files).
#
# That machine reaches no package registry and has most of the runtime already (torch, Pillow,
# NumPy, SciPy, scikit-image, tifffile, Click, PyYAML, tqdm, pytest, hypothesis); the two
# packages it lacks travel as wheels, and the photos as files. Prepare them here, once, from the
# repository root:
#
#   printf '/.whl/\n/.gpu-data/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl imagecodecs PyWavelets
#   mkdir -p .gpu-data && cp ../shared/data/synthetic/low/*.png .gpu-data/
#
# then run `bash benchmarks/gpu_check.sh` there with carry [".whl", ".gpu-data"] and timeout_s 570.
# Here (no GPU) `DEVICE=cpu PYTHON=.venv/bin/python DATA=../shared/data/synthetic/low bash
# benchmarks/gpu_check.sh` runs the same steps on the CPU, to check the script itself.
set -uo pipefail
OUT=${OUT:-/tmp/rrdnet-gpu-check}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.gpu-data}
WORK=$(mktemp -d)
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        .whl/*.whl || exit 1
    export PYTHONPATH=$WORK/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
RRDNET=("$PYTHON" -m rrdnet_cli)

step() { echo "== $*" >>"$OUT/smoke.log"; }
step "the machine"
"$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
    >>"$OUT/smoke.log" 2>&1
nproc >>"$OUT/smoke.log"

# The suite pins the CPU; serve's tests need Starlette and a browser, which that machine lacks.
timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider --ignore=tests/test_serve.py \
    --ignore=tests/test_serve_page.py >"$OUT/tests.log" 2>&1
echo "tests: exit $?" >>"$OUT/smoke.log"

step "default on $DEVICE and on the CPU, then the pictures compared (PSNR of $DEVICE's against the CPU's)"
timeout 180 "${RRDNET[@]}" enhance "$DATA" -o "$WORK/device" --device "$DEVICE" >>"$OUT/smoke.log" 2>&1
timeout 180 "${RRDNET[@]}" enhance "$DATA" -o "$WORK/cpu" --device cpu >>"$OUT/smoke.log" 2>&1
"${RRDNET[@]}" eval "$WORK/device" --reference "$WORK/cpu" --json "$OUT/device_vs_cpu.json" >>"$OUT/smoke.log" 2>&1
step "paper, 50 steps, on $DEVICE"
first=$(find "$DATA" -maxdepth 1 -type f | sort | head -n 1)
timeout 120 "${RRDNET[@]}" enhance "$first" -o "$WORK/paper" --config paper --iterations 50 --device "$DEVICE" -v \
    >>"$OUT/smoke.log" 2>&1
echo "paper: exit $?" >>"$OUT/smoke.log"

# Speed: several photos at once on one GPU means several worker processes sharing it (--jobs N).
timeout 150 "$PYTHON" benchmarks/jobs_speed.py --data "$DATA" --limit 1 --rounds 3 --jobs 1 --device "$DEVICE" \
    --output "$OUT/one_photo_device.json" >/dev/null 2>>"$OUT/smoke.log"
timeout 150 "$PYTHON" benchmarks/jobs_speed.py --data "$DATA" --rounds 2 --jobs 1,2,4 --device "$DEVICE" \
    --output "$OUT/folder_device.json" >/dev/null 2>>"$OUT/smoke.log"
# Whether one process fitting the photos as a group would pay there (it does not on a CPU).
timeout 120 "$PYTHON" benchmarks/grouped_fit.py --data "$DATA" --device "$DEVICE" \
    --output "$OUT/grouped_fit_device.json" >/dev/null 2>>"$OUT/smoke.log"
timeout 120 "$PYTHON" benchmarks/jobs_speed.py --data "$DATA" --rounds 2 --jobs 1,auto --device cpu \
    --output "$OUT/folder_cpu.json" >/dev/null 2>>"$OUT/smoke.log"
rm -rf "$WORK"
step "done"
