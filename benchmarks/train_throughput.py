"""Training throughput (clips/s) on this machine, and whether the data loader keeps up.

    python -m benchmarks.train_throughput [--threads 2] [--steps 5] [--batch 4] [--workers 2] [--tiny-only] [--json OUT]

Three measurements:

* ``tiny``: the test suite's tiny SlowFast (width 4, 8 frames, 32 px) training steps;
* ``slowfast_8x8_r50``: the full-size zoo model (8+32 frames at 224 px) training steps;
  both in float32 and under bfloat16 autocast, on random inputs, so only the model counts;
* ``loader``: clips/s of the training data loader alone on a synthetic set (decode +
  augmentation + collation, ``--workers`` processes) at the tiny model's input size,
  timed from its first batch (as the model figures are after a warm-up step).

When ``loader`` clips/s is below a model's clips/s, the loader is the bottleneck there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from benchmarks import positive_int, run_main


def _model_throughput(config, batch: int, steps: int, amp_dtype) -> float:
    import torch

    from vidact.models import build_model
    from vidact.transforms import pack_pathways

    model = build_model(config).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    spec = config.input
    clip = torch.randn(batch, 3, spec.num_frames, spec.train_crop_size, spec.train_crop_size)
    inputs = pack_pathways(clip, spec)
    labels = torch.randint(0, config.num_classes, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = model(inputs)
        loss = torch.nn.functional.cross_entropy(outputs.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, autocast caches
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def _loader_throughput(spec, batch: int, workers: int, batches: int) -> float:
    from torch.utils.data import DataLoader

    from vidact.data.synthetic import make_classification
    from vidact.data.video_dataset import VideoClipDataset

    with tempfile.TemporaryDirectory() as folder:
        data = make_classification(folder, num_classes=4, videos_per_class=max(2, batch * (batches + 1) // 4),
                                   val_per_class=0, height=spec.train_jitter_scales[0],
                                   width=spec.train_jitter_scales[0] * 5 // 4)
        dataset = VideoClipDataset(data.train_list, spec, "train")
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
        batches_in = iter(loader)
        next(batches_in)  # the clock starts after it: the workers' start-up is not throughput
        start, clips = time.perf_counter(), 0
        for _, batch_data in zip(range(batches), batches_in):
            clips += batch_data["label"].shape[0]
        return clips / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=positive_int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tiny-only", action="store_true", help="skip the full-size SlowFast (quick check)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from vidact.config.model import InputSpec, ModelConfig, ResNetConfig, SlowFastConfig
    from vidact.weights.zoo import get_entry

    torch.set_num_threads(args.threads)
    tiny = ModelConfig(
        arch="slowfast", num_classes=4, resnet=ResNetConfig(width_per_group=4), slowfast=SlowFastConfig(alpha=4, beta_inv=4),
        input=InputSpec(num_frames=8, sampling_rate=2, train_crop_size=32, test_crop_size=32,
                        train_jitter_scales=(32, 40), alpha=4, num_pathways=2),
    )
    models = {"tiny": tiny}
    if not args.tiny_only:
        models["slowfast_8x8_r50"] = get_entry("slowfast_8x8_r50").config
    results: dict = {"threads": args.threads, "batch": args.batch}
    for name, config in models.items():
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            clips = _model_throughput(config, args.batch, args.steps, dtype)
            results[f"{name}/{precision}_clips_per_s"] = round(clips, 3)
            print(f"{name:18s} {precision}: {clips:8.2f} clips/s", flush=True)
    loader = _loader_throughput(tiny.input, args.batch, args.workers, batches=args.steps)
    results[f"loader/workers{args.workers}_clips_per_s"] = round(loader, 3)
    print(f"{'loader':18s} {args.workers} workers: {loader:8.2f} clips/s")
    if args.json:
        from vidact.fileutil import atomic_open

        with atomic_open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    run_main(main)
