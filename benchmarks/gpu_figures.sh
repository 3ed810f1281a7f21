#!/usr/bin/env bash
# Issue #7's GPU figures in one run, on a machine with an NVIDIA GPU:
#
#     bash benchmarks/gpu_figures.sh VIDEO_1080P OUT_DIR
#
# VIDEO_1080P: a 1920x1080 30 fps clip, e.g. the shared basketball clip upscaled:
#     ffmpeg -stream_loop 2 -i $VIDACT_SHARED/data/videos/mmaction2_test_video_structuralize.mp4 \
#            -vf scale=1920:1080:flags=bicubic,fps=30 -c:v libx264 -preset fast -crf 23 -an basketball_1080p30.mp4
# VIDACT_SHARED must point at the shared reference folder (c3.yaml, FastestDet, the tests' fixtures).
# Every step has a time limit and writes OUT_DIR/STEP.log (and .json); a failing step does not stop
# the others, and the script ends by naming those that failed (exit 1). DEVICE=cpu runs the same
# steps on the CPU (a dry run of this script). PYTHON: the interpreter (default .venv/bin/python).
set -u
video=$1
out=$2
device=${DEVICE:-cuda}
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
shared=${VIDACT_SHARED:-../shared}
cfg=$shared/configs/pyslowfast/fork/c3.yaml
fastestdet=$shared/data/weights/fastestdet/FastestDet.onnx
mkdir -p "$out"
"$py" -c "import vidact, av, torch" 2>/dev/null || {
    echo "$py cannot import vidact, av and torch: run from the repository root (make install-dev) or set PYTHON" >&2
    exit 2
}
failed=()

step() {  # step NAME SECONDS COMMAND...: run, log, print the log's tail
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local status=$?
    [ $status -ne 0 ] && failed+=("$name")
    echo "-- $name: exit $status, $((SECONDS - start)) s"
    tail -n "${TAIL:-14}" "$out/$name.log"
}

detect() {  # detect NAME [detect_e2e options]: vidact detect end to end on the 1080p clip
    local name=$1
    shift
    step "$name" 75 "$py" -m benchmarks.detect_e2e --cfg "$cfg" --video "$video" --detector "$fastestdet" \
        --device "$device" --precision auto --json "$out/$name.json" "$@"
}

[ "$device" = cuda ] && step gpu 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
step bench_ava 170 "$py" -m vidact bench --model ava_slowfast_32x2_r101_v2.2 --device "$device" --batch 1 16 \
    --precision fp32 bf16 --repeats "${REPEATS:-10}" --json "$out/bench_ava.json"
step video_stages 120 "$py" -m benchmarks.video_stages "$video"
detect detect_1080p
step tests 100 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py
detect detect_1080p_data_only --no-video
detect detect_1080p_data_only_cudnn_benchmark --no-video --cudnn-benchmark  # the autotuner detect leaves off
detect detect_1080p_ultrafast --video-preset ultrafast
# The pipeline without the model's time (what it reaches on this host), and the drawing A/B.
detect detect_1080p_instant_data_only --no-video --instant-model
detect detect_1080p_instant_ultrafast --video-preset ultrafast --instant-model
detect detect_1080p_draw_on_rgb --draw-on-rgb
detect detect_1080p_switch_1ms --switch-interval 0.001
[ -n "${NVDEC:-}" ] && detect detect_1080p_nvdec --decode cuda
step doctor 30 "$py" -m vidact doctor
[ ${#failed[@]} -eq 0 ] || { echo "failed or timed out: ${failed[*]} (see their logs in $out)" >&2; exit 1; }
