"""Tune the baselines' settings on the toy world's tuning prompts, never on the benchmark's.

    python evaluation/toy_tune.py --out runs/toy_tune

The command of `evaluation/toy/tune.py`, where its flags and outputs are described.
"""
from evaluation.toy.tune import main

if __name__ == "__main__":
    main()
