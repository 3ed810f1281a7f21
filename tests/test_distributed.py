"""Two gloo ranks under torchrun train with DDP and end with identical parameters and buffers."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import torch

from vidact.config.run_io import dump_run_config
from vidact.data.synthetic import make_classification

WORKER = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from vidact.config.run_io import load_run_config
    from vidact.engine import distributed as dist
    from vidact.engine.hooks import HookBase
    from vidact.engine.trainer import train

    class DumpParameters(HookBase):
        def after_train(self):
            rank = dist.get_rank()
            state = {k: v.detach().clone() for k, v in self.trainer.module.named_parameters()}
            buffers = {k: v.detach().clone() for k, v in self.trainer.module.named_buffers()}
            torch.save({"params": state, "buffers": buffers, "world": dist.get_world_size(), "steps": self.trainer.global_step,
                        "reduced": dist.all_reduce_mean({"rank": float(rank)})}, sys.argv[2] + f"/rank{rank}.pt")

    result = train(load_run_config(sys.argv[1]), extra_hooks=[DumpParameters()], progress=False)
    torch.save(result.final_metrics, sys.argv[2] + f"/metrics{dist.get_rank()}.pt")
    dist.cleanup()
    import os
    threads = [open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")]
    torch.save(threads, sys.argv[2] + f"/threads{dist.get_rank()}.pt")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_hold_identical_parameters(tmp_path):
    from test_engine import tiny_run

    data = make_classification(tmp_path / "data", num_classes=4, videos_per_class=2, val_per_class=1,
                               height=32, width=40, num_frames=16)
    run = tiny_run(data.root, tmp_path / "out", max_epoch=2)
    dump_run_config(run, tmp_path / "run.yaml")
    (tmp_path / "worker.py").write_text(WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), str(tmp_path / "worker.py"), str(tmp_path / "run.yaml"), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    # 8 clips over 2 ranks, 2 per rank per step: 2 steps per epoch, 2 epochs.
    assert [r["steps"] for r in ranks] == [4, 4]
    assert ranks[0]["reduced"] == ranks[1]["reduced"] == {"rank": 0.5}
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys()
    assert all(torch.equal(ranks[0]["params"][k], ranks[1]["params"][k]) for k in ranks[0]["params"])
    # BatchNorm statistics too: validation ran on rank 0's (what its checkpoint stores) everywhere.
    assert all(torch.equal(ranks[0]["buffers"][k], ranks[1]["buffers"][k]) for k in ranks[0]["buffers"])
    # Training moved the weights away from their (shared) initialisation.
    from vidact.models import build_model

    torch.manual_seed(run.seed)
    initial = dict(build_model(run.model).named_parameters())
    assert any(not torch.equal(initial[k], ranks[0]["params"][k]) for k in initial)
    metrics = [torch.load(tmp_path / f"metrics{r}.pt", weights_only=True) for r in range(2)]
    assert metrics[0]["val/top1_acc"] == metrics[1]["val/top1_acc"]
    assert metrics[0]["train_epoch/loss"] == metrics[1]["train_epoch/loss"]
    assert (tmp_path / "out" / "checkpoints" / "checkpoint_epoch_00002.pyth").is_file()
    # gloo's worker threads end with cleanup(): left to the interpreter's exit, one of them could
    # release a finished collective's tensors as Python shut down and abort the process.
    for rank in range(2):
        threads = torch.load(tmp_path / f"threads{rank}.pt", weights_only=True)
        assert "python" in threads and "pt_gloo_runloop" not in threads, threads


def test_a_worker_is_its_rank_after_the_process_group_is_gone(monkeypatch):
    """``vidact test`` prints after cleanup(): only rank 0 may, so the rank outlives the group."""
    from vidact.engine import distributed as dist

    monkeypatch.setenv("RANK", "1")
    assert dist.get_rank() == 1 and not dist.is_main_process()
    monkeypatch.delenv("RANK")
    assert dist.is_main_process()
