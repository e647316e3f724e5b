"""DATE, fixed embeddings and the competing test-time methods in the toy world, where following the caption is checked exactly.

    python evaluation/toy_bench.py --prompts assets/toy/prompts.csv --seeds 2 --out runs/toy_bench

The command of `evaluation/toy/bench.py`, where its flags and outputs are described.
"""
from evaluation.toy.bench import main

if __name__ == "__main__":
    main()
