"""The toy world's measured comparison: the benchmark (`bench`), the methods it compares (`methods`), what it writes
besides results.json (`report`) and the baselines' tuning runs (`tune`). Commands: evaluation/toy_bench.py and
evaluation/toy_tune.py."""
