#!/usr/bin/env bash
# Full-budget retrains of several training arms side by side on one CUDA GPU (docs/training_ablation.md,
# "Full retrains on a GPU"). Not for CI. Usage, from the repository root:
#
#   benchmarks/gpu_arms.sh DATA_DIR OUT_DIR DEADLINE_S ARM...
#
# DATA_DIR holds CIFAR-10 as train.npz/test.npz (jpeg+offsets or images); OUT_DIR receives per arm
# ARM.ckpt (the finished checkpoint without its optimizer state; the last finished epoch's if the
# deadline stopped it) and logs.tar.gz (every arm's train.log and metrics.jsonl). DEADLINE_S: wall
# seconds from the start after which unfinished arms are stopped and their last epoch kept.
# Every arm trains the cpu preset from scratch for the shipped run's step counts per stage
# (models/cifar10-cpu.train.log: 22,194 / 1,586 / 886 / 785 / 664 steps; here 57/4/2/2/2 epochs of
# 390 steps = 22,230 / 1,560 / 780 / 780 / 780), so each is an equal-budget retrain.
# The arms (name -> extra flags) are in the case statement below.
set -u
DATA=$1; OUT=$2; DEADLINE=$3; shift 3
ESCMVQ=(python3 -c "import sys; from escmvq.cli.main import main; sys.argv[0] = 'escmvq'; main()")
# DEVICE, EPOCHS and SPE (steps per epoch) may be overridden for a quick check on a CPU
DEVICE=${DEVICE:-cuda}
COMMON=(--preset cpu --dataset cifar10 --epochs "${EPOCHS:-57,4,2,2,2}" --steps-per-epoch "${SPE:-390}"
        --distortion-images 10000 --log-every 1000 --threads 2 --device "$DEVICE")
C5=(--decoder-cond codebook --noise gray --erase-prob 0,0,0,0,0.3)
flags() {
  case $1 in
    seq-plain) echo "" ;;                                                  # the shipped recipe (control)
    seq-c5) echo "${C5[*]}" ;;                                             # the default's options, Algorithm 1 stages
    jd-c5) echo "${C5[*]} --schedule joint-draw" ;;                        # + every codebook from the start
    jd-c5-s1) echo "${C5[*]} --schedule joint-draw --seed 1" ;;            # seed replicate
    jd-c5-enc4) echo "${C5[*]} --schedule joint-draw --encoder-grad-codebooks 4" ;;
    jd-c5-data) echo "${C5[*]} --schedule joint-draw --joint-init data" ;;
    jd-plain) echo "--schedule joint-draw" ;;
    *) echo "unknown arm $1" >&2; exit 2 ;;
  esac
}
mkdir -p "$OUT" runs/gpu
t0=$(date +%s)
# decode the JPEGs once for every arm
python3 - "$DATA" runs/gpu/data <<'EOF' || exit 1
import sys, time
from pathlib import Path
import numpy as np
from escmvq.training.data import decode_npz
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
t = time.time()
for s in ("train", "test"):
    np.savez(dst / f"{s}.npz", images=decode_npz(src / f"{s}.npz"))
print(f"decoded in {time.time() - t:.1f} s", flush=True)
EOF
# smoke: every arm's options for a few steps of the tiny preset on the GPU (fails fast)
spids=()
for arm in "$@"; do
  f=$(flags "$arm") || exit 2
  "${ESCMVQ[@]}" train --preset tiny --dataset cifar10 --data-dir runs/gpu/data --limit 512 --epochs 1,1,1,1,1 \
    --steps-per-epoch 3 --device "$DEVICE" --out "runs/gpu/smoke-$arm" $f > "runs/gpu/smoke-$arm.log" 2>&1 &
  spids+=($!)
done
i=0
for arm in "$@"; do
  wait "${spids[$i]}" || { echo "SMOKE FAILED: $arm"; tail -30 "runs/gpu/smoke-$arm.log"; exit 1; }
  i=$((i + 1))
done
echo "smoke passed in $(( $(date +%s) - t0 )) s"
pids=()
for arm in "$@"; do
  "${ESCMVQ[@]}" train "${COMMON[@]}" --data-dir runs/gpu/data --out "runs/gpu/$arm" $(flags "$arm") \
    > "runs/gpu/$arm.log" 2>&1 &
  pids+=($!)
done
while :; do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  if [ $(( $(date +%s) - t0 )) -ge "$DEADLINE" ]; then
    echo "deadline: stopping unfinished arms"; kill "${pids[@]}" 2>/dev/null; sleep 3; break
  fi
  sleep 5
  for arm in "$@"; do printf '%s: %s\n' "$arm" "$(grep -E '^stage [0-9] epoch' "runs/gpu/$arm.log" | tail -1)"; done | sort > runs/gpu/progress.txt
done
for arm in "$@"; do
  ck="runs/gpu/$arm/final.ckpt"; [ -f "$ck" ] || ck="runs/gpu/$arm/last.ckpt"
  [ -f "$ck" ] && python3 -c "from escmvq.training.checkpoint import strip_checkpoint as s; s('$ck', '$OUT/$arm.ckpt')"
  echo "$arm: $ck $(grep -E '^stage [0-9] epoch' "runs/gpu/$arm.log" | tail -1)"
  cp "runs/gpu/$arm/metrics.jsonl" "runs/gpu/$arm.metrics.jsonl" 2>/dev/null
done
tar czf "$OUT/logs.tar.gz" runs/gpu/*.log runs/gpu/*.metrics.jsonl 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
