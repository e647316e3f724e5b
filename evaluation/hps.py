"""HPS v2.1 of generated images (see evaluation/h_metric.py):

    python evaluation/hps.py --img_path <generated_dir> [--h_model hps=PATH_OR_ID] [--num_eval 5000] [--bs 16]
"""
from evaluation import h_metric

if __name__ == "__main__":
    h_metric.main("hps", "HPS v2.1")
