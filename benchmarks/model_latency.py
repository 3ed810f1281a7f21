"""CPU latency per clip of the reference models, eager fp32, and peak RSS.

    python -m benchmarks.model_latency [--threads 2] [--repeats 5] [--json OUT]

Each model runs in its own subprocess so that its peak RSS is its own. Inputs
match the issue: SlowFast 8x8 R50 (8+32 frames, 256x256), AVA SlowFast 32x2
R101 (8+32 frames, 256x320, 3 boxes), X3D-M (16 frames, 256x256). Weights are
random (latency does not depend on them). For scale, the reference
implementation measured 1.30 s, 3.18 s and 0.437 s on a 2-core AVX-512 machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from benchmarks import positive_int, run_main
from vidact.errors import VidactError

CASES = {
    "slowfast_8x8_r50": dict(shapes=[(1, 3, 8, 256, 256), (1, 3, 32, 256, 256)], boxes=0, reference_s=1.30),
    "ava_slowfast_32x2_r101_v2.2": dict(shapes=[(1, 3, 8, 256, 320), (1, 3, 32, 256, 320)], boxes=3, reference_s=3.18),
    "x3d_m": dict(shapes=[(1, 3, 16, 256, 256)], boxes=0, reference_s=0.437),
}


def make_inputs(case: dict):
    import torch

    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shape, generator=generator) for shape in case["shapes"]]
    if not case["boxes"]:
        return (inputs,)
    height, width = case["shapes"][0][-2:]
    boxes = torch.tensor([[0, 10, 20, 110, 200], [0, 150, 30, 300, 250], [0, 60, 60, 200, 240]], dtype=torch.float32)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(max=width - 1)
    boxes[:, 2::2] = boxes[:, 2::2].clamp(max=height - 1)
    return (inputs, boxes[: case["boxes"]])


def run_one(name: str, threads: int, repeats: int, warmup: int) -> dict:
    import torch

    import vidact

    torch.set_num_threads(threads)
    model = vidact.create_model(name).eval()
    args = make_inputs(CASES[name])
    with torch.inference_mode():
        for _ in range(warmup):
            model(*args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(*args)
            times.append(time.perf_counter() - start)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": name,
        "mode": "eager fp32",
        "threads": threads,
        "repeats": repeats,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "reference_s": CASES[name]["reference_s"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model in this process
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one, args.threads, args.repeats, args.warmup)))
        return 0

    records = []
    # The reference's times come from another run on another machine: a scale, not a side-by-side ratio
    # (`vidact bench` measures eager and optimised side by side).
    print(f"{'model':32} {'median s':>9} {'min s':>8} {'ref s*':>7} {'ref/ours*':>9} {'peak RSS MiB':>13}")
    for name in args.models:
        cmd = [sys.executable, "-m", "benchmarks.model_latency", "--one", name,
               "--threads", str(args.threads), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:  # the child's own error (a bad model, out of memory), not a traceback of ours
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise VidactError(f"{name}: the timing run failed: {reason}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
        records.append(record)
        ratio = record["reference_s"] / record["median_s"]
        print(f"{name:32} {record['median_s']:9.3f} {record['min_s']:8.3f} {record['reference_s']:7.3f} {ratio:9.2f} {record['peak_rss_mib']:13.0f}")
    print("* PySlowFast's eager fp32, measured once on a 2-core AVX-512 machine: for scale only")
    if args.json:
        from vidact.fileutil import atomic_open

        with atomic_open(args.json) as f:
            json.dump(records, f, indent=2)
    return 0


if __name__ == "__main__":
    run_main(main)
