"""Environment doctor, GPU monitor, benchmarks."""
