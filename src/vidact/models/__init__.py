"""Network architectures: built from a ModelConfig, a state_dict in, tensors out."""
