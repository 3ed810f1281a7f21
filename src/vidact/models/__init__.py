"""Network architectures: built from a ModelConfig, a state_dict in, tensors out."""

from vidact.models.build import build_model, init_weights
from vidact.models.flops import count_gflops

__all__ = ["build_model", "count_gflops", "init_weights"]
