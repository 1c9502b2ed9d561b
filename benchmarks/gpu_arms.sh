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
# The seq-*/jd-* arms train the cpu preset from scratch for the shipped run's step counts per stage
# (models/cifar10-cpu.train.log: 22,194 / 1,586 / 886 / 785 / 664 steps; here 57/4/2/2/2 epochs of
# 390 steps = 22,230 / 1,560 / 780 / 780 / 780), so each is an equal-budget retrain. The ft-* arms
# are fine-tunes of the held stage 5 (docs/training_ablation.md "(F)") from BASE (default
# runs/ablation/B1/final.ckpt, the refreshed codebook 1); an arm with a "pre" step (ft-b3x4) first
# trains that step into runs/gpu/ARM-pre and starts from its final.ckpt.
# The arms (name -> extra flags) are in the case statements below; bl-METHOD-LEVEL (e.g. bl-esc-svq-1,
# bl-bsc-vq-0.1) trains a baseline pair. An arm the deadline stopped comes back as ARM.last.ckpt, whole,
# so that `escmvq train ... --resume` (or train-baselines) can finish it.
set -u
DATA=$1; OUT=$2; DEADLINE=$3; shift 3
ESCMVQ=(python3 -c "import sys; from escmvq.cli.main import main; sys.argv[0] = 'escmvq'; main()")
# DEVICE, EPOCHS and SPE (steps per epoch) may be overridden, and EXTRA flags appended to every
# training, for a quick check on a CPU (e.g. EXTRA="--limit 256 --steps-per-epoch 2 --distortion-images 64")
DEVICE=${DEVICE:-cuda}
COMMON=(--preset cpu --dataset cifar10 --epochs "${EPOCHS:-57,4,2,2,2}" --steps-per-epoch "${SPE:-390}"
        --distortion-images 10000 --log-every 1000 --threads 2 --device "$DEVICE")
C5=(--decoder-cond codebook --noise gray --erase-prob 0,0,0,0,0.3)
FT="${C5[*]} --init-from ${BASE:-runs/ablation/B1/final.ckpt} --steps-per-epoch 781 --lr 1e-3 --tau0 0.23 --freeze encoder"
flags() {
  case $1 in
    seq-plain) echo "" ;;                                                  # the shipped recipe (control)
    seq-c5) echo "${C5[*]}" ;;                                             # the default's options, Algorithm 1 stages
    jd-c5) echo "${C5[*]} --schedule joint-draw" ;;                        # + every codebook from the start
    jd-c5-s1) echo "${C5[*]} --schedule joint-draw --seed 1" ;;            # seed replicate
    jd-c5-enc4) echo "${C5[*]} --schedule joint-draw --encoder-grad-codebooks 4" ;;
    jd-c5-data) echo "${C5[*]} --schedule joint-draw --joint-init data" ;;
    jd-plain) echo "--schedule joint-draw" ;;
    # fine-tunes: passes of 781 steps (one pass over the training set) of the held stage 5
    ft-x2) echo "$FT --epochs 0,0,0,0,2" ;;                                # the default's recipe (F6x2)
    ft-x4) echo "$FT --epochs 0,0,0,0,4" ;;
    ft-x8) echo "$FT --epochs 0,0,0,0,8" ;;
    ft-x4-lr2) echo "$FT --epochs 0,0,0,0,4 --lr 2e-3" ;;
    ft-x4-eu) echo "$FT --epochs 0,0,0,0,4 --erase-dist uniform" ;;        # erasure rate per image U(0, 0.6)
    ft-x4-eu4) echo "$FT --epochs 0,0,0,0,4 --erase-prob 0,0,0,0,0.4 --erase-dist uniform" ;;  # U(0, 0.8)
    ft-x8-eu) echo "$FT --epochs 0,0,0,0,8 --erase-dist uniform" ;;
    ft-b3x4) echo "$FT --epochs 0,0,0,0,4 --init-from runs/gpu/ft-b3x4-pre/final.ckpt" ;;
    ft-x6-eu-lr2) echo "$FT --epochs 0,0,0,0,6 --erase-dist uniform --lr 2e-3 --init-from runs/ablation/B1/final.ckpt" ;;
    # continuations (BASE = a finished fine-tune, e.g. ft-x8-eu's checkpoint)
    ft-x5-eu) echo "$FT --epochs 0,0,0,0,5 --erase-dist uniform" ;;
    ft-x5-eu-lr2) echo "$FT --epochs 0,0,0,0,5 --erase-dist uniform --lr 2e-3" ;;
    ft-x3-eu-lr05) echo "$FT --epochs 0,0,0,0,3 --erase-dist uniform --lr 5e-4" ;;
    ft-x8-eu-lr2) echo "$FT --epochs 0,0,0,0,8 --erase-dist uniform --lr 2e-3" ;;
    # the equal-budget baseline pairs of docs/evaluation.md (escmvq train-baselines' training command:
    # 67 epochs of 390 steps, seed 0); export them with train-baselines, which skips a pair whose
    # final.ckpt exists (put ARM.ckpt at OUT/NAME/final.ckpt)
    bl-*) s=${1#bl-}; echo "--baseline ${s%-*}:${s##*-} --epochs ${BL_EPOCHS:-67} --log-every 0" ;;
    *) echo "unknown arm $1" >&2; exit 2 ;;
  esac
}
# a step some arms train first (three stage-1 passes refreshing codebook 1, as B1 did with one)
pre() {
  case $1 in
    ft-b3x4) echo "${C5[*]} --init-from models/cifar10-cpu-cond.ckpt --epochs 3,0,0,0,0 --steps-per-epoch 781 --lr 5e-4 --tau0 0.23" ;;
    *) echo "" ;;
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
  p=$(pre "$arm")
  [ -n "$p" ] && f="$p"  # the arm's own init does not exist yet: smoke its pre step
  se=1,1,1,1,1; [[ $arm == bl-* ]] && se=1  # a baseline pair has one stage
  "${ESCMVQ[@]}" train --preset cpu --dataset cifar10 --data-dir runs/gpu/data --limit 512 $f --epochs $se \
    --steps-per-epoch 2 --distortion-images 64 --device "$DEVICE" --out "runs/gpu/smoke-$arm" \
    > "runs/gpu/smoke-$arm.log" 2>&1 &
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
  (
    p=$(pre "$arm")
    if [ -n "$p" ]; then
      "${ESCMVQ[@]}" train "${COMMON[@]}" --data-dir runs/gpu/data --out "runs/gpu/$arm-pre" $p ${EXTRA:-} \
        > "runs/gpu/$arm-pre.log" 2>&1 || exit 1
    fi
    exec "${ESCMVQ[@]}" train "${COMMON[@]}" --data-dir runs/gpu/data --out "runs/gpu/$arm" $(flags "$arm") ${EXTRA:-} \
      > "runs/gpu/$arm.log" 2>&1
  ) &
  pids+=($!)
done
while :; do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  if [ $(( $(date +%s) - t0 )) -ge "$DEADLINE" ]; then
    echo "deadline: stopping unfinished arms"; for p in "${pids[@]}"; do pkill -P "$p"; done; kill "${pids[@]}" 2>/dev/null; sleep 3; break
  fi
  sleep 5
  for arm in "$@"; do printf '%s: %s\n' "$arm" "$(grep -sE '^stage [0-9] epoch' "runs/gpu/$arm.log" | tail -1)"; done | sort > runs/gpu/progress.txt
done
for arm in "$@"; do
  ck="runs/gpu/$arm/final.ckpt"
  if [ -f "$ck" ]; then
    python3 -c "from escmvq.training.checkpoint import strip_checkpoint as s; s('$ck', '$OUT/$arm.ckpt')"
  elif [ -f "runs/gpu/$arm/last.ckpt" ]; then  # unfinished: kept whole (optimizer state), so it resumes
    ck="runs/gpu/$arm/last.ckpt"; cp "$ck" "$OUT/$arm.last.ckpt"
  fi
  echo "$arm: $ck $(grep -sE '^stage [0-9] epoch' "runs/gpu/$arm.log" | tail -1)"
  cp "runs/gpu/$arm/metrics.jsonl" "runs/gpu/$arm.metrics.jsonl" 2>/dev/null
done
tar czf "$OUT/logs.tar.gz" runs/gpu/*.log runs/gpu/*.metrics.jsonl 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
