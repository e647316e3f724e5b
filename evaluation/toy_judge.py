"""The toy world's judge for folders of toy images made by any script: exact accuracy per caption template, toy-CLIP
score and toy FID.

    python evaluation/toy_judge.py FOLDER [FOLDER ...] [--text_path captions.csv] [--num_eval N]

The command of `evaluation/toy/judge.py`, where its flags and outputs are described.
"""
from evaluation.toy.judge import main

if __name__ == "__main__":
    main()
