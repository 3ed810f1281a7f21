"""``vidact bench``: latency of eager and optimised inference, side by side, on this machine."""

from __future__ import annotations

import argparse

from vidact.tools.bench import DEFAULT_MODELS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time eager fp32 against the optimised inference mode, per model",
        description="Measure a matrix-product peak, then per model eager fp32 and the optimised mode at each "
        "precision (latency, achieved GFLOP/s, speedup over eager fp32), timed round-robin in one run. "
        "Weights are random: latency does not depend on them. See docs/performance.md.",
    )
    parser.add_argument("--model", dest="models", nargs="+", metavar="NAME",
                        help=f"zoo names or config files (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--precision", dest="precisions", nargs="+", choices=["fp32", "bf16", "fp16"],
                        help="optimised precisions to time (default: fp32, plus bf16 where it is native)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimised models (slow first call)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per mode after a warm-up (default 5)")
    parser.add_argument("--batch", dest="batch_sizes", type=int, nargs="+", default=[1], metavar="N",
                        help="clips per call, each size timed on its own (default 1); e.g. --batch 1 16")
    parser.add_argument("--pipeline", dest="pipelines", nargs="+", default=[], metavar="NAME",
                        help="also time a pipeline end to end, per stage (detect: needs --video)")
    parser.add_argument("--video", help="the video the pipeline benches run on")
    parser.add_argument("--gemm-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="OUT", help="write the environment, GEMM peaks and records as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidact.fileutil import check_writable_file, is_regular_file_path
    from vidact.tools.bench import format_record, run_bench, write_json

    if args.json:
        check_writable_file(args.json)  # before minutes of benchmarking, not after
    result = run_bench(
        args.models or DEFAULT_MODELS, precisions=args.precisions, device=args.device, threads=args.threads,
        repeats=args.repeats, compile=args.compile, batch_sizes=args.batch_sizes, pipelines=args.pipelines, video=args.video, gemm_size=args.gemm_size,
        on_record=lambda record: print(format_record(record), flush=True),
        # A pipe or a terminal takes one document: only a plain file is rewritten as records come.
        on_progress=(lambda partial: write_json(partial, args.json)) if args.json and is_regular_file_path(args.json) else None,
    )
    peaks = ", ".join(f"{p} {v:.1f}" for p, v in result["gemm_peak_gflop_per_s"].items())
    print(f"GEMM peak (GFLOP/s): {peaks}; threads {result['environment']['threads']}")
    if args.json:
        write_json(result, args.json)
    return 0
