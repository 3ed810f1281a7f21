"""``vidact run --cfg FILE.yaml [--opts KEY VALUE ...]``: run a PySlowFast config as it is.

Like PySlowFast's ``tools/run_net.py``: train when ``TRAIN.ENABLE``, then test when
``TEST.ENABLE``, then the demo when ``DEMO.ENABLE`` (the AVA demo with
``DETECTION.ENABLE``, the Kinetics demo without). ``--opts`` comes last; bare
``KEY VALUE`` pairs after the config, as ``run_net.py`` takes them, work too.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a PySlowFast config: train, test and/or demo as its ENABLE keys say",
        description="Run a PySlowFast YAML config unmodified (TRAIN/TEST/DEMO.ENABLE), with PySlowFast --opts overrides.",
    )
    p.add_argument("--cfg", required=True, metavar="FILE.yaml", help="PySlowFast config (or vidact run YAML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="overrides, last on the line, e.g. DEMO.INPUT_VIDEO in.mp4 NUM_GPUS 0")
    p.add_argument("pairs", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from vidact.cli._args import check_opts_last
    from vidact.config.run_io import load_run_config
    from vidact.errors import VidactError

    # Bare pairs swallow a later "--opts" (argparse's remainder); drop the marker itself.
    opts = [item for item in args.pairs if item != "--opts"] + args.opts
    check_opts_last(opts, args.command)
    run = load_run_config(args.cfg, opts)
    if not (run.train.enable or run.test.enable or run.demo.enable):
        raise VidactError(f"{args.cfg}: TRAIN.ENABLE, TEST.ENABLE and DEMO.ENABLE are all False; enable one (--opts DEMO.ENABLE True)")
    _check_demo_output(run)
    progress = not args.no_progress
    if run.train.enable or run.test.enable:
        _train_and_test(run, progress)
    if run.demo.enable:
        if run.model.detection.enable:
            from vidact.pipeline.detect import run_ava_demo

            outputs = run_ava_demo(run)
            print(f"wrote {outputs.video}")
        else:
            from vidact.pipeline.kinetics_demo import run_kinetics_demo

            summary = run_kinetics_demo(run, progress=progress)
            print(f"wrote {summary.output}: {summary.num_frames} frames, {summary.num_tasks} clips, weights {summary.checkpoint}")
    return 0


def _check_demo_output(run) -> None:
    """Both demos write their video over DEMO.OUTPUT_FILE, so it must be writable and not the source;
    checked here, before any training that runs first."""
    from vidact.errors import VidactError
    from vidact.fileutil import check_writable_file, same_file

    demo = run.demo
    if not demo.enable or not demo.output_file:
        return
    check_writable_file(demo.output_file)
    if demo.webcam >= 0 or not demo.input_video:
        return
    if same_file(demo.output_file, demo.input_video):
        raise VidactError(
            f"{run.source}: DEMO.OUTPUT_FILE {demo.output_file} is DEMO.INPUT_VIDEO; it would replace the source video, "
            "set another DEMO.OUTPUT_FILE"
        )


def _train_and_test(run, progress: bool) -> None:
    """``vidact train`` then ``vidact test``, as their commands run them, except that the test
    scores the weights just trained unless TEST.CHECKPOINT_FILE_PATH names others: PySlowFast's
    pick, the highest-numbered checkpoint in OUTPUT_DIR, may be a stale one of an earlier, longer run."""
    from vidact.engine import distributed as dist
    from vidact.engine.trainer import test, train

    trained = None
    try:
        if run.train.enable:
            result = train(run, progress=progress)
            trained = result.final_checkpoint
            if dist.is_main_process() and result.final_metrics:
                print(json.dumps({"epochs": run.solver.max_epoch, **result.final_metrics}, sort_keys=True))
        if run.test.enable:
            metrics = test(run, None if run.checkpoint.test_path else trained, progress=progress)
            if dist.is_main_process():
                print(json.dumps(metrics, sort_keys=True))
    finally:
        dist.cleanup()
