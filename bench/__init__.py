"""turnspec benchmarks: each figure a median of several runs, each comparison measured in the same process."""
