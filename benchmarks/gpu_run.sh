#!/usr/bin/env bash
# Everything the kit does on a GPU, in one go, for a short lease on a GPU machine:
#   1. the CUDA checks (benchmarks/gpu_checks.py): the captured step against the eager one, reruns, the NaN guard,
#      where a step's time goes;
#   2. the whole batch of notebooks with full epochs (python -m kit run --device auto: the GPU);
#   3. the benchmark's full-length case (python -m kit bench --device cuda), the default step's row first;
#   4. only with SEARCH=1: the search's runs on seeds 1 to 12 of the solution's model (z-rot, 9,930 parameters)
#      and of three others of 7,844 to 8,950 ($CANDIDATES and $SEARCH_SEEDS to choose others): does the
#      solution hold the target on the GPU's seeds as it does on the CPU's?
# The batch and the search run their notebooks under CUDA MPS where the machine has it (MPS=0: never), so that
# the kernels of several processes run side by side instead of taking turns on the GPU; a probe that cannot reach
# the GPU through it turns it off again, and the checks and the bench always run without it.
# BATCH=notebooks/assignments runs only the notebooks below that folder, BATCH="A.ipynb B.ipynb" only those (of one
# folder); by default every notebook of notebooks/.
# Each phase has a time limit (CHECKS_S, BATCH_S, BENCH_S, SEARCH_S seconds), prints its timings, and every result
# is archived into OUT/results.tgz as soon as its phase ends, so a run cut short still brings back what it made.
# Phases 1 to 3 end within TOTAL_S (540 s by default) of the script's start: the bench gets what the checks and
# the batch left (at least 200 s, unless BENCH_S says otherwise); give the machine's command limit that, plus
# installing.
# A second call can finish what a first one left: WORK=the folder it worked in (its archive unpacked, or the
# same folder on a machine still held) and PHASES="batch bench" (any of checks, batch, bench, search); the batch
# then runs only the notebooks without a good report there (--changed-only).
#
#   bash .gpu/on-gpu.sh bash benchmarks/gpu_run.sh OUT            # on the GPU machine (.gpu/: what it lacks)
#   JOBS=2 bash benchmarks/gpu_run.sh /tmp/dry --quick           # a dry run of the whole script on a CPU
set -uo pipefail
out=${1:?usage: gpu_run.sh OUT [--quick]}
quick=${2:-}
device=cuda
[ "$quick" = "--quick" ] && device=auto
py=${PYTHON:-python3}
work=${WORK:-$(mktemp -d /tmp/kit-gpu.XXXXXX)}
phases=" ${PHASES:-checks batch bench} "
[ "${SEARCH:-0}" = 1 ] && phases="$phases search "
# BATCH's notebooks report where the main command's run would put them, below reports/
read -ra batch <<< "${BATCH:-notebooks}"
reports=""
for i in "${!batch[@]}"; do
  batch[$i]=${batch[$i]%/}
  entry=${batch[$i]}
  case "$entry" in
    notebooks | notebooks/*) ;;
    *) echo "BATCH: $entry is not below notebooks/; name notebooks, a folder below it or notebooks in one" >&2
       exit 2 ;;
  esac
  if [ -d "$entry" ]; then here=${entry#notebooks}
  elif [ -f "$entry" ] && [[ $entry == *.ipynb ]]; then here=$(dirname "$entry"); here=${here#notebooks}
  else echo "BATCH: $entry: no such folder or notebook" >&2; exit 2
  fi
  if [ -n "$reports" ] && [ "$reports" != "$work/reports$here" ]; then
    echo "BATCH: name one folder, or notebooks of one folder (${batch[*]})" >&2
    exit 2
  fi
  reports="$work/reports$here"
done
mkdir -p "$out" "$work/search"
# the bench adds its device's section to these two; the other devices' sections stay
[ -f "$work/results.json" ] || cp benchmarks/RESULTS.md benchmarks/results.json "$work/" 2>/dev/null || true
start=$SECONDS
say() { echo "[gpu_run +$((SECONDS - start))s] $*"; }
archive() { tar czf "$out/results.tgz.tmp" -C "$work" . && mv "$out/results.tgz.tmp" "$out/results.tgz"; }
limit() { local s=$1; shift; [ "$quick" = "--quick" ] && s=$((s * 4)); timeout --kill-after=10 "$s" "$@"; }

{ nvidia-smi 2>&1 || echo "no nvidia-smi"; $py -c "import torch; print('torch', torch.__version__)"; } >> "$work/machine.txt"
if [[ $phases == *" checks "* ]]; then
  say "phase 1: CUDA checks"
  limit "${CHECKS_S:-75}" $py benchmarks/gpu_checks.py ${quick:+--quick} --out "$work/checks.json" 2>&1 \
    | tee "$work/checks.log"
  status=${PIPESTATUS[0]}
  # broken (2), or cut short before the check of the captured step passed: the batch does without the graph
  if [ "$status" = 2 ] || { [ "$status" -ge 124 ] && ! grep -q "ok  the captured step computes" "$work/checks.log"; }; then
    touch "$work/eager"  # a second call in this folder keeps to it
  fi
  archive
fi
if [ -f "$work/eager" ]; then
  export KIT_GRAPH=0
  say "a CUDA-graph check failed: the batch and the search run eager (KIT_GRAPH=0)"
fi

# CUDA MPS: the control daemon's pipes in a folder of this run's (outside the archive), its log in the archive,
# the GPU's own settings untouched; the daemon quits when its phase ends and on every exit
mps_on() {
  [ "${MPS:-1}" = 1 ] && [ "$device" = cuda ] && command -v nvidia-cuda-mps-control > /dev/null || return 1
  export CUDA_MPS_PIPE_DIRECTORY="$(mktemp -d /tmp/kit-mps.XXXXXX)" CUDA_MPS_LOG_DIRECTORY="$work/mps-log"
  mkdir -p "$CUDA_MPS_LOG_DIRECTORY"
  # the probe: a cuDNN convolution and a CUDA graph's replay through the MPS server
  if nvidia-cuda-mps-control -d && timeout 45 $py -c "
import torch
x = torch.ones(1, 1, 8, 8, device='cuda')
y = torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3, device='cuda'))
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    z = x * 2
g.replay()
assert y.sum().item() == 324 and z.sum().item() == 128"; then
    say "CUDA MPS on: the notebooks' kernels share the GPU side by side"
    return 0
  fi
  say "CUDA MPS did not start or could not reach the GPU: the notebooks take turns on the GPU"
  mps_off
  return 1
}
mps_off() {
  if [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ]; then
    echo quit | timeout 20 nvidia-cuda-mps-control > /dev/null 2>&1
    rm -rf "$CUDA_MPS_PIPE_DIRECTORY"
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
}
trap mps_off EXIT

if [[ $phases == *" batch "* ]]; then
  say "phase 2: the batch of notebooks (${batch[*]})"
  jobs=${JOBS:-8} mps=0 began=$SECONDS
  # under MPS a notebook's kernels do not wait for another's: every notebook starts at once
  mps_on && echo "CUDA MPS: on for the batch" >> "$work/machine.txt" && jobs=${JOBS:-16} mps=1
  again=""
  [ -d "$reports" ] && again="--changed-only"  # a second call: only what has no good report yet
  # --device auto, not cuda: the reports keep the parameter as injected, and CI re-runs them on a CPU
  limit "${BATCH_S:-300}" $py -m kit run "${batch[@]}" --device auto --jobs "$jobs" --out "$reports" \
    ${quick:+--quick} $again 2>&1 | tee -a "$work/batch.log"
  status=${PIPESTATUS[0]}
  say "batch ended: status $status"
  mps_off
  left=$(( ${BATCH_S:-300} - (SECONDS - began) ))
  if [ "$mps" = 1 ] && [ "$status" = 1 ] && [ "$left" -ge 30 ]; then
    # some notebooks failed under MPS: once more without it, only those, in what is left of the batch's time
    say "again without MPS, within $left s: the notebooks that failed"
    limit "$left" $py -m kit run "${batch[@]}" --device auto --jobs "${JOBS:-8}" --out "$reports" \
      ${quick:+--quick} --changed-only 2>&1 | tee -a "$work/batch.log"
    say "batch ended: status ${PIPESTATUS[0]}"
  fi
  archive
fi

if [[ $phases == *" bench "* ]]; then
  left=$(( ${TOTAL_S:-540} - (SECONDS - start) ))
  bench_s=${BENCH_S:-$(( left > 200 ? left : 200 ))}
  say "phase 3: the benchmark, within $bench_s s"
  limit "$bench_s" $py -m kit bench --device "$device" --out "$work/RESULTS.md" ${quick:+--quick} 2>&1 \
    | tee -a "$work/bench.log"
  archive
fi

if [[ $phases != *" search "* ]]; then
  say "done in $((SECONDS - start)) s; results in $out/results.tgz (SEARCH=1 also runs the search)"
  exit 0
fi
read -ra candidates <<< "${CANDIDATES:-z-rot y-rot s-rot u-rot}"
read -ra seeds <<< "${SEARCH_SEEDS:-1 2 3 4 5 6 7 8 9 10 11 12}"
say "phase 4: the search: ${candidates[*]} on seeds ${seeds[*]}"
shards=${SHARDS:-6}
mps_on && echo "CUDA MPS: on for the search" >> "$work/machine.txt"
for i in $(seq 1 "$shards"); do
  limit "${SEARCH_S:-150}" $py notebooks/assignments/mnist_4_steps/search.py "${candidates[@]}" --seeds "${seeds[@]}" --device "$device" \
    --shard "$i/$shards" --out "$work/search/shard-$i.json" ${quick:+--quick} > "$work/search/shard-$i.log" 2>&1 &
done
wait
mps_off
$py notebooks/assignments/mnist_4_steps/search.py --merge "$work"/search/shard-*.json --out "$work/search/search.json"
$py notebooks/assignments/mnist_4_steps/search.py --table --out "$work/search/search.json" | tail -n +3
archive
say "done in $((SECONDS - start)) s; results in $out/results.tgz"
