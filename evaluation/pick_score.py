"""PickScore of generated images (see evaluation/h_metric.py):

    python evaluation/pick_score.py --img_path <generated_dir> [--h_model pickscore=PATH_OR_ID] [--num_eval 5000] [--bs 16]
"""
import os
import sys

if not __package__:  # run as `python evaluation/<script>.py`: import from the repository root, not from evaluation/
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from evaluation import h_metric  # noqa: E402

if __name__ == "__main__":
    h_metric.main("pickscore", "PickScore")
