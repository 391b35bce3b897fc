#!/usr/bin/env bash
# The GPU work on a machine with an NVIDIA GPU and a CUDA toolkit, in stages (build first on a fresh
# checkout or environment):
#   bash benchmarks/gpu_run.sh build tests tests_slow sanitize initcheck_probe kernels batchnorm_mish training demo
#   bash benchmarks/gpu_run.sh build aoti inference   (AOTInductor probe + tests, whole-detector inference)
#   bash benchmarks/gpu_run.sh build max_autotune     (a run of its own; resumable, see the stage)
#   bash benchmarks/gpu_run.sh build spp_block
#   bash benchmarks/gpu_run.sh build training_loss  (then training_loss_compile, once per TRAINING_LOSS_ACT, or
#                                                   training_loss_compile_all, the three in one call;
#                                                   training_loss_modes: eager and compiled in one call;
#                                                   training_loss_profile: the loss under torch.profiler)
#   bash benchmarks/gpu_run.sh build accuracy       (a detector trained, its mAP through every deploy path)
#   bash benchmarks/gpu_run.sh nms                    (darknet NMS: build, CUDA tests, sanitizers, op benchmark)
#   bash benchmarks/gpu_run.sh build nms_detector     (a compiled Detector's share of time in NMS)
# Logs and results go to out/gpu. With OUT set to a folder, they are also packed into one archive,
# $OUT/gpu.tgz, at the end (for copying the results off the machine).
set -uo pipefail
cd "$(dirname "$0")/.."
ARCHIVE_DIR=${OUT:-}
OUT=out/gpu
mkdir -p "$OUT"
pack() { [ -n "$ARCHIVE_DIR" ] && tar czf "$ARCHIVE_DIR/gpu.tgz" -C out gpu demo_gpu/summary.json 2>/dev/null; }
trap pack EXIT
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
if [ -z "${TENSORRT_INCLUDE_DIR:-}" ] && [ -d .trt_headers ]; then
  export TENSORRT_INCLUDE_DIR=$PWD/.trt_headers/tensorrt-11.1/include:$PWD/.trt_headers/tensorrt-10.16/include
fi
PY=${PY:-python3}
# bench_training_loss.py's bf16 row for one activation (training_loss_compile and _modes stages):
# loss_bench TIMEOUT_S MODE ACTIVATION NAME [more options]; results/NAME.*, log $OUT/bench_NAME.log
act_slug() { echo "$1" | tr -c 'A-Za-z0-9\n' _; }
loss_compile_name() { echo "training_loss_compile_$(act_slug "$1")"; }
loss_bench() {
  local limit=$1 mode=$2 act=$3 name=$4; shift 4
  timeout "$limit" $PY benchmarks/bench_training_loss.py --modes "$mode" --precisions bf16-autocast --activations "$act" \
    --out-name "$name" "$@" > "$OUT/bench_$name.log" 2>&1
}
loss_compile() { local limit=$1 act=$2; shift 2; loss_bench "$limit" compile "$act" "$(loss_compile_name "$act")" "$@"; }
status=0
for stage in "$@"; do
  echo "=== $stage $(date -u +%H:%M:%S)"
  case $stage in
    build)
      $PY -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
      $PY -c 'import torch_mish; print(torch_mish.build_info())' ;;
    tests|tests_slow)  # tests: the suite without the tests marked slow (AOTInductor compiles, 4 GiB
      # tensors, the whole CPU demo), which tests_slow runs. With pytest-xdist: PYTEST_WORKERS (16, one
      # per core of a 16-core host), work stealing (idle workers take queued tests from busy ones, so
      # a few long compiles do not leave the rest waiting at the end) and one line per result, so a
      # failure's name is in the log when the timeout cuts the summary; the slowest tests are listed
      # at the end (--durations), to mark next.
      args=(-q); $PY -c "import xdist" 2>/dev/null && args=(-n "${PYTEST_WORKERS:-16}" --dist worksteal -v -p no:benchmark)
      marks="not slow"; limit=420; [ $stage = tests_slow ] && { marks=slow; limit=560; }
      timeout $limit $PY -m pytest tests -m "$marks" -rfs -p no:cacheprovider --durations=25 "${args[@]}" 2>&1 \
        | grep -v '^DEBUG' > "$OUT/pytest_$stage.log"
      status=$((status | $?)); grep -E "(FAILED|ERROR) tests/" "$OUT/pytest_$stage.log" | sort -u | head -20
      tail -3 "$OUT/pytest_$stage.log" ;;
    sanitize)
      # initcheck runs unfiltered: with --kernel-regex it does not see the writes of the filtered-out
      # kernels (randn, copies), and reports every read of their output as uninitialized.
      for tool in memcheck racecheck initcheck; do
        filter=(--kernel-regex kns=mish); [ $tool = initcheck ] && filter=()
        timeout 200 compute-sanitizer --tool $tool "${filter[@]}" --error-exitcode 9 \
          $PY -m pytest tests/test_ops.py tests/test_autograd.py tests/test_nn.py tests/tensorrt/test_plugin_library.py \
          -v -p no:cacheprovider -k "(cuda or enqueue) and not every_ and not 1000003 and not gradcheck" -x > "$OUT/sanitizer_$tool.log" 2>&1
        rc=$?; status=$((status | rc))
        echo "$tool rc=$rc: $(grep -E 'ERROR SUMMARY|passed|failed' "$OUT/sanitizer_$tool.log" | tail -2 | tr '\n' ' ')"
      done ;;
    initcheck_probe)
      for reader in torch_mish relu clone sum; do
        compute-sanitizer --tool initcheck $PY benchmarks/initcheck_probe.py $reader > "$OUT/initcheck_$reader.log" 2>&1
        echo "$reader: $(grep -c 'Uninitialized __global__ memory read' "$OUT/initcheck_$reader.log") uninitialized-read reports;" \
          "kernels: $(grep -A2 'Uninitialized __global__' "$OUT/initcheck_$reader.log" | grep -o 'in [A-Za-z_:<>]*' | sort | uniq -c | head -3 | tr '\n' ' ')"
      done ;;
    backward_probe)  # host time against kernel time of the backward through autograd (float32, 4-64 Mi)
      timeout 200 $PY benchmarks/backward_host_probe.py > "$OUT/backward_host_probe.log" 2>&1; status=$((status | $?))
      cp benchmarks/results/backward_host_probe.* "$OUT/" 2>/dev/null; tail -12 "$OUT/backward_host_probe.log" ;;
    host_overhead)
      $PY benchmarks/host_overhead.py | tee "$OUT/host_overhead.log" ;;
    ncu)
      timeout 200 ncu --section SpeedOfLight --metrics smsp__inst_executed.sum,dram__bytes.sum,lts__t_bytes.sum \
        --kernel-name-base demangled -k regex:mish -c 8 $PY benchmarks/ncu_backward.py > "$OUT/ncu_backward.log" 2>&1; status=$((status | $?))
      grep -E "mish|Duration|Memory Throughput|Compute \(SM\)|inst_executed|dram__bytes|lts__t_bytes" "$OUT/ncu_backward.log" | cut -c1-150 | head -64 ;;
    ncu_forward)  # torch_mish's forward against ReLU's: instructions, bytes, issue activity
      timeout 200 ncu --section SpeedOfLight \
        --metrics smsp__inst_executed.sum,dram__bytes.sum,smsp__issue_active.avg.pct_of_peak_sustained_elapsed \
        --kernel-name-base demangled -k regex:"mish|clamp|relu|threshold" $PY benchmarks/ncu_forward.py > "$OUT/ncu_forward.log" 2>&1
      status=$((status | $?))
      grep -E "^  [a-zA-Z_].*\(|Duration|Memory Throughput|DRAM Through|Compute \(SM\)|inst_executed|dram__bytes|issue_active" \
        "$OUT/ncu_forward.log" | cut -c1-150 | head -80 ;;
    fused_activation)  # the activation kernels Inductor generates (time, bandwidth, SASS)
      timeout 300 $PY benchmarks/bench_fused_activation.py > "$OUT/bench_fused_activation.log" 2>&1; status=$((status | $?))
      cp benchmarks/results/fused_activation.* "$OUT/" 2>/dev/null; tail -22 "$OUT/bench_fused_activation.log" ;;
    kernels)
      timeout 300 $PY benchmarks/bench_kernels.py > "$OUT/bench_kernels.log" 2>&1; status=$((status | $?))
      cp benchmarks/results/kernels.* "$OUT/" 2>/dev/null; tail -3 "$OUT/bench_kernels.log" ;;
    kernels_small)  # 4 Ki .. 1 Mi only: the host-bound sizes, after a host-path change
      timeout 200 $PY benchmarks/bench_kernels.py --max-size 1048576 --out-name kernels_small > "$OUT/bench_kernels_small.log" 2>&1
      status=$((status | $?)); cp benchmarks/results/kernels_small.* "$OUT/" 2>/dev/null; tail -3 "$OUT/bench_kernels_small.log" ;;
    batchnorm_mish)
      timeout 200 $PY benchmarks/bench_batchnorm_mish.py > "$OUT/bench_batchnorm_mish.log" 2>&1; status=$((status | $?))
      cp benchmarks/results/batchnorm_mish.* "$OUT/" 2>/dev/null; tail -20 "$OUT/bench_batchnorm_mish.log" ;;
    training)
      timeout 560 $PY benchmarks/bench_training.py --modes eager --profile > "$OUT/bench_training.log" 2>&1
      status=$((status | $?)); cp benchmarks/results/training.* benchmarks/results/profiles/training.txt "$OUT/" 2>/dev/null
      tail -11 "$OUT/bench_training.log" ;;
    training_loss)  # yolov4-csp with darknet's loss (YoloLoss), eager, bf16 and fp32, three activations: ~2 min
      timeout 230 $PY benchmarks/bench_training_loss.py --modes eager > "$OUT/bench_training_loss.log" 2>&1
      status=$((status | $?)); cp benchmarks/results/training_loss.* "$OUT/" 2>/dev/null
      tail -9 "$OUT/bench_training_loss.log" ;;
    training_loss_profile)  # the loss under torch.profiler (fused Mish, bf16): where its time goes
      timeout 200 $PY benchmarks/bench_training_loss.py --modes eager --precisions bf16-autocast \
        --activations torch_mish.Mish+BN --out-name training_loss_profiled --profile "$OUT" > "$OUT/bench_training_loss_profile.log" 2>&1
      status=$((status | $?)); grep -m1 "calls of YoloLoss" "$OUT"/training_loss_torch_mish.Mish_BN_bf16-autocast.txt ;;
    accuracy)  # a detector trained on the synthetic shapes, its mAP through every deploy path and dtype
      # (ACCURACY_ARGS adds bench_accuracy.py flags, e.g. --budget-s)
      timeout 590 $PY benchmarks/bench_accuracy.py ${ACCURACY_ARGS:-} > "$OUT/bench_accuracy.log" 2>&1
      status=$((status | $?)); cp benchmarks/results/accuracy.* "$OUT/" 2>/dev/null
      grep -v "^W[0-9]" "$OUT/bench_accuracy.log" | grep -v "it/s\]" | tail -30 ;;
    training_loss_compile)  # the same compiled, bf16; one activation per call (a compilation takes minutes):
      # TRAINING_LOSS_ACT="torch_mish.Mish+BN" (default), "nn.Mish" or "LeakyReLU(0.1)"
      act=${TRAINING_LOSS_ACT:-torch_mish.Mish+BN}; name=$(loss_compile_name "$act")
      loss_compile 230 "$act"; status=$((status | $?)); cp benchmarks/results/"$name".* "$OUT/" 2>/dev/null
      tail -4 "$OUT/bench_$name.log" ;;
    training_loss_compile_all)  # the three activations' training_loss_compile at once: compiled in parallel
      # (the minutes go there), timed one process at a time (bench_training_loss.py --take-turns)
      # TURNS_DIR, TURNS_EXTRA: a folder and a count of other jobs that touch a .compiled file there when
      # they no longer use the GPU (the timing waits for them too)
      turns=${TURNS_DIR:-$(mktemp -d)}; pids=()
      for act in "torch_mish.Mish+BN" "nn.Mish" "LeakyReLU(0.1)"; do
        loss_compile 540 "$act" --take-turns "$turns" --processes $((3 + ${TURNS_EXTRA:-0})) &
        pids+=($!)
      done
      for pid in "${pids[@]}"; do wait "$pid"; status=$((status | $?)); done
      cp benchmarks/results/training_loss_compile_*.* "$OUT/" 2>/dev/null
      tail -qn 2 "$OUT"/bench_training_loss_compile_*.log ;;
    training_loss_modes)  # one activation eager and compiled in one call, each process timed alone
      # (--take-turns), with Dynamo's recompilations logged: whether the modes' step times compare.
      # TRAINING_LOSS_ACT as for training_loss_compile; TURNS_DIR/TURNS_EXTRA as for _all.
      act=${TRAINING_LOSS_ACT:-torch_mish.Mish+BN}; turns=${TURNS_DIR:-$(mktemp -d)}; pids=(); names=()
      for mode in eager compile; do
        name=training_loss_modes_${mode}_$(act_slug "$act")
        TORCH_LOGS=recompiles loss_bench 540 $mode "$act" "$name" --take-turns "$turns" --processes $((2 + ${TURNS_EXTRA:-0})) &
        pids+=($!); names+=("$name")
      done
      for pid in "${pids[@]}"; do wait "$pid"; status=$((status | $?)); done
      for name in "${names[@]}"; do
        cp benchmarks/results/"$name".* "$OUT/" 2>/dev/null; echo "$name: $(grep -c Recompiling "$OUT/bench_$name.log") recompilations"
        tail -n 1 "$OUT/bench_$name.log"
      done ;;
    training_compile_fp32|training_compile_bf16)  # one precision per call: each compile takes ~2 min
      precision=fp32; acts="torch_mish.Mish,nn.Mish"
      [ $stage = training_compile_bf16 ] && { precision=bf16-autocast; acts="torch_mish.Mish,nn.Mish,LeakyReLU(0.1)"; }
      timeout 570 $PY benchmarks/bench_training.py --modes compile --precisions $precision --compile-activations "$acts" \
        --out-name $stage > "$OUT/bench_$stage.log" 2>&1
      status=$((status | $?)); cp benchmarks/results/$stage.* "$OUT/" 2>/dev/null
      grep -v "^W[0-9]" "$OUT/bench_$stage.log" | tail -6 ;;
    distributed)
      timeout 300 $PY -m pytest tests/test_distributed.py tests/test_concurrency.py -v -rs -p no:cacheprovider > "$OUT/distributed.log" 2>&1
      status=$((status | $?)); grep -E "PASS|FAIL|SKIP|ERROR|passed|failed" "$OUT/distributed.log" | tail -14 ;;
    aoti)  # the C++ runner, the AOTInductor probe (load crash, op kept or decomposed), tests/test_aoti.py
      bash examples/aoti/build.sh out/aoti/aoti_runner > "$OUT/aoti_runner_build.log" 2>&1 || { tail -20 "$OUT/aoti_runner_build.log"; status=1; }
      timeout 300 $PY benchmarks/aoti_probe.py --out out/aoti > "$OUT/aoti_probe.log" 2>&1; status=$((status | $?))
      cp out/aoti/aoti_probe.json out/aoti/aoti_probe.md "$OUT/" 2>/dev/null; grep -v "^W[0-9]" "$OUT/aoti_probe.log" | tail -14
      TORCH_MISH_AOTI_RUNNER=$PWD/out/aoti/aoti_runner timeout 400 $PY -m pytest tests/test_aoti.py -v -rs -p no:cacheprovider \
        > "$OUT/test_aoti.log" 2>&1; status=$((status | $?)); tail -3 "$OUT/test_aoti.log" ;;
    inference)  # whole detectors, every path; INFERENCE_ARGS narrows it (see benchmarks/README.md)
      timeout 590 $PY benchmarks/bench_inference.py --profile ${INFERENCE_ARGS:-} > "$OUT/bench_inference.log" 2>&1
      status=$((status | $?)); cp benchmarks/results/inference.* benchmarks/results/plots/inference.png "$OUT/" 2>/dev/null; cp out/inference/profile.*.txt "$OUT/" 2>/dev/null
      grep -v "^W[0-9]" "$OUT/bench_inference.log" | tail -30 ;;
    max_autotune)  # detector cells under mode="max-autotune", the three activations of a cell one after
      # another; MAX_AUTOTUNE_CELLS="model/dtype/batch ..." (default: yolov4-csp/fp16/16, or the one cell
      # MAX_AUTOTUNE_MODEL/_DTYPE/_BATCH) runs its cells side by side, one GPU each. A search can outlast
      # one run of this script (batch 16, or any without the ptxas setting below): the Inductor cache
      # stays in out/inductor_cache (a rerun on the same machine resumes from it) and is packed, without
      # compiled binaries, as out/inductor_cache.tgz, which a run on a fresh machine resumes from when
      # it is put back in out/ (MAX_AUTOTUNE_RETURN_CACHE=1 also copies it into $OUT; the default for a
      # one-cell run, so that a search can continue on another machine; an unpacked
      # out/inductor_cache takes precedence over the archive). MAX_AUTOTUNE_PROFILE=1
      # adds each group's torch.profiler kernel summary. BENCH_STACK_DUMP_S=N logs each group's Python
      # stacks every N s (faulthandler; diagnosis only: one group died with SIGSEGV during a dump).
      # BENCH_AWAIT_COMPILE_POOL=1 waits for Inductor's compile worker pool before compiling (the
      # autotuner only uses the pool if it is ready when asked; kernels do not change, and the
      # yolov4x-mish search took 676 s with it against 731 s without: benchmarks/README.md).
      # MAX_AUTOTUNE_ACTIVATIONS narrows the groups (nn.Mish's search takes 90-150 s, and under
      # max-autotune torch_mish has taken 0.64-0.75x of nn.Mish's time, so that ratio is never close).
      # Inductor's compile workers set TRITON_PTXAS_PATH to the ptxas the torch wheel ships, where it
      # ships one (torch 2.11+cu130: 13.0); the parent keeps Triton's (12.8). The ptxas version is in
      # Triton's cache key, so the parent compiled every benchmarked choice again: giving it the
      # workers' ptxas cut yolov4x-mish fp16 batch 1's benchmarking from 400 s to 9 s
      # (benchmarks/README.md). On by default; MAX_AUTOTUNE_TORCH_PTXAS=0 leaves Triton's.
      { read -r torch_ptxas; read -r triton_ptxas; } < <($PY -c 'import os, torch, triton
print(os.path.join(os.path.dirname(torch.__file__), "bin", "ptxas"))
print(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"))')
      for ptxas in "$torch_ptxas" "$triton_ptxas"; do
        echo "ptxas $ptxas: $([ -x "$ptxas" ] && "$ptxas" --version | tail -1 || echo absent)"
      done
      if [ "${MAX_AUTOTUNE_TORCH_PTXAS:-1}" = 1 ]; then
        [ -x "$torch_ptxas" ] && export TRITON_PTXAS_PATH=$torch_ptxas || echo "max_autotune: no torch ptxas, TRITON_PTXAS_PATH left as is"
      fi
      [ -f out/inductor_cache.tgz ] && [ ! -d out/inductor_cache ] && tar xzf out/inductor_cache.tgz -C out
      cells=${MAX_AUTOTUNE_CELLS:-${MAX_AUTOTUNE_MODEL:-yolov4-csp}/${MAX_AUTOTUNE_DTYPE:-fp16}/${MAX_AUTOTUNE_BATCH:-16}}
      # the GPUs the caller made visible (all by default), one per cell
      IFS=, read -ra gpu_ids <<< "${CUDA_VISIBLE_DEVICES:-$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, -)}"
      gpu=0; pids=(); names=(); run_dir=runs/$(date -u +%F)  # one search's cells: a dated run, not the published table
      for cell in $cells; do
        [ $gpu -lt ${#gpu_ids[@]} ] || { echo "max_autotune: more cells than the ${#gpu_ids[@]} GPUs, $cell not run"; status=1; break; }
        IFS=/ read -r model dtype batch <<< "$cell"
        name=inference_max_autotune; [ "$cell" != yolov4-csp/fp16/16 ] && name+=_${model}_${dtype}_b$batch
        profile=(); [ "${MAX_AUTOTUNE_PROFILE:-0}" = 1 ] && profile=(--profile --profile-dtypes $dtype --profile-batches $batch)
        CUDA_VISIBLE_DEVICES=${gpu_ids[$gpu]} TORCHINDUCTOR_CACHE_DIR=$PWD/out/inductor_cache timeout 590 \
          $PY benchmarks/bench_inference.py --models darknet:$model --paths max-autotune --dtypes $dtype \
          --batches $batch --max-autotune-dtypes $dtype --max-autotune-batches $batch \
          --activations "${MAX_AUTOTUNE_ACTIVATIONS:-torch_mish.Mish,nn.Mish,LeakyReLU(0.1)}" --kernel-batches "" --iters 40 --warmup 10 \
          --jobs 1 --compile-threads "${COMPILE_THREADS:-30}" --deadline-s "${MAX_AUTOTUNE_DEADLINE_S:-500}" \
          --timing-reserve-s 60 --workdir "out/$name" --out-name $run_dir/$name "${profile[@]}" > "$OUT/$name.log" 2>&1 &
        pids+=($!); names+=("$name"); gpu=$((gpu + 1))
      done
      for i in "${!pids[@]}"; do
        wait "${pids[$i]}"; status=$((status | $?)); name=${names[$i]}
        cp benchmarks/results/$run_dir/$name.* "out/$name"/log.*.txt "out/$name"/profile.*.txt "$OUT/" 2>/dev/null
        echo "--- $name"; grep -v "^W[0-9]" "$OUT/$name.log" | tail -8
      done
      tar czf out/inductor_cache.tgz --exclude=triton -C out inductor_cache
      # Copied in 15 MiB parts, for transfers that limit a file's size (cat them back into
      # out/inductor_cache.tgz); by default only a one-cell run's cache, as several cells' caches
      # together can outgrow what such a transfer takes.
      copy_cache=0; [ ${#names[@]} = 1 ] && copy_cache=1
      if [ "${MAX_AUTOTUNE_RETURN_CACHE:-$copy_cache}" = 1 ] && [ -n "$ARCHIVE_DIR" ]; then
        split -b 15M out/inductor_cache.tgz "$ARCHIVE_DIR/inductor_cache.tgz.part-"
      fi ;;
    spp_block)  # the SPP block per activation, compile mode and realize_opcount_threshold (its
      # max-autotune rows search one 1x1 convolution shape per dtype)
      timeout "${SPP_BLOCK_TIMEOUT_S:-560}" $PY benchmarks/bench_spp_block.py > "$OUT/spp_block.log" 2>&1
      status=$((status | $?)); cp benchmarks/results/spp_block.* "$OUT/" 2>/dev/null
      grep -v "^W[0-9]" "$OUT/spp_block.log" | tail -14 ;;
    nms)  # darknet NMS (csrc/kernels/darknet_nms_launch.cu), in parts (NMS_PARTS, default all four):
      # build (incremental: what the build stage does), tests (the tests that reach the CUDA kernels),
      # sanitize (the kernels under compute-sanitizer: shared-memory races, out-of-bounds accesses,
      # barriers), bench (the op against torchvision and a PyTorch DIoU loop: results/nms.{csv,md}).
      # All four take about 10 minutes on a fresh machine: split them over two calls if needed.
      for part in ${NMS_PARTS:-build tests sanitize bench}; do
        case $part in
          build)
            $PY -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
            $PY -c 'import torch_mish; assert torch_mish.has_cuda_kernels(), "built without CUDA kernels"' || exit 1 ;;
          tests)
            timeout 300 $PY -m pytest tests/darknet/test_nms.py tests/darknet/test_detector.py tests/darknet/test_nms_onnx.py \
              -v -rs -p no:cacheprovider > "$OUT/nms_tests.log" 2>&1; status=$((status | $?))
            grep -E "(FAILED|ERROR) tests/" "$OUT/nms_tests.log" | sort -u | head -20; tail -2 "$OUT/nms_tests.log" ;;
          sanitize)
            for tool in memcheck racecheck synccheck; do
              timeout 240 compute-sanitizer --tool $tool --kernel-regex kns=nms --error-exitcode 9 \
                $PY -m pytest tests/darknet/test_nms.py -v -p no:cacheprovider \
                -k "(cuda_matches_reference_and_cpu and float32) or heavy_suppression or captures" > "$OUT/nms_sanitizer_$tool.log" 2>&1
              rc=$?; status=$((status | rc))
              echo "$tool rc=$rc: $(grep -E 'ERROR SUMMARY|passed|failed' "$OUT/nms_sanitizer_$tool.log" | tail -2 | tr '\n' ' ')"
            done ;;
          bench)
            timeout 400 $PY benchmarks/bench_nms.py --sections ops > "$OUT/bench_nms.log" 2>&1; status=$((status | $?))
            cp benchmarks/results/nms.* "$OUT/" 2>/dev/null; grep -v "^{" "$OUT/bench_nms.log" | tail -5; tail -18 benchmarks/results/nms.md ;;
          *) echo "unknown NMS_PARTS entry $part"; exit 2 ;;
        esac
      done ;;
    nms_detector)  # Detector and model compiled with CUDA graphs, batch 1 fp16 (results/nms_detector.{csv,md})
      timeout 560 $PY benchmarks/bench_nms.py --sections detector > "$OUT/bench_nms_detector.log" 2>&1; status=$((status | $?))
      cp benchmarks/results/nms_detector.* "$OUT/" 2>/dev/null; grep -v "^W[0-9]" "$OUT/bench_nms_detector.log" | tail -6
      tail -6 benchmarks/results/nms_detector.md ;;
    demo)  # the main job at its GPU size: training, then every deploy path's mAP
      timeout 560 $PY examples/demo.py --device cuda --out out/demo_gpu 2>&1 | grep -v "^W[0-9]" > "$OUT/demo.log"
      status=$((status | $?)); tail -14 "$OUT/demo.log" ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
exit $status
