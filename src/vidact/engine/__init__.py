"""Training loop, checkpoints, distributed set-up."""
