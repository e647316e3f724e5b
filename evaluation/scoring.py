"""The numbers behind Table 1 for each folder: its images and captions, per-image scores and FID, each saved beside
the images and reused while the images, captions and models are unchanged; every model is loaded at most once."""
import functools
import os
import sys
from typing import List, Sequence, Tuple

import numpy as np

from date.io.errors import UserInputError
from evaluation import clip_score, concept_scores, h_metric, image_reward
from evaluation.caption_metric import score_captioned_folder
from evaluation.fid import Reference, feature_statistics, frechet_distance
from evaluation.image_folder import captioned_images, generated_image_paths
from evaluation.inception import InceptionFeatures
from evaluation.score_files import folder_fingerprint, load_scores, load_valid, save_npz
from evaluation.table import AE_METRICS, CLIP, H_METRICS, IMAGE_REWARD, TOY_EXACT, Folder
from evaluation.toy.measures import ExactChecker, checker_id

FEATURES_FILE = "fid_features.npz"
REFERENCE_FEATURES_FILE = "fid_reference_features.npz"  # all images of a reference folder, in name order


def _warn(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def cached_features(features: InceptionFeatures, cache: str, paths: Sequence[str], desc: str) -> np.ndarray:
    """Inception features of `paths`, saved in the `cache` file and reused while images and weights match."""
    fingerprint = folder_fingerprint(paths, None, f"inception:{features.weights_id}")
    saved = load_valid(cache, "features", fingerprint)
    if saved is not None:
        return saved
    computed = features(paths, desc)
    try:
        save_npz(cache, {"features": computed, "fingerprint": np.array(fingerprint)})
    except OSError as e:  # e.g. a read-only reference folder: the result is still right, only slower next time
        _warn(f"could not cache features in {cache}: {e}")
    return computed


def folder_fid(folder: Folder, reference: Reference, features: InceptionFeatures) -> float:
    """FID of a folder's images against the reference, both through the feature caches."""
    own = cached_features(features, os.path.join(folder.path, FEATURES_FILE), folder.paths, f"FID {folder.name}")
    reference_cache = os.path.join(reference.path, REFERENCE_FEATURES_FILE)
    reference_stats = reference.statistics(functools.partial(cached_features, features, reference_cache))
    return frechet_distance(*feature_statistics(own), *reference_stats)


def _display_names(dirs: Sequence[str]) -> List[str]:
    """Folder names as methods; full paths where two folders share a name."""
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    return [name if names.count(name) == 1 else d for name, d in zip(names, dirs)]


def open_folders(dirs: Sequence[str], num_eval: int, text_path: str | None, need_captions: bool) -> List[Folder]:
    folders = []
    for path, name in zip(dirs, _display_names(dirs)):
        if need_captions:
            paths, captions = captioned_images(path, num_eval, text_path)
        else:
            paths, captions = generated_image_paths(path, num_eval), None
        folders.append(Folder(path, name, paths, captions))
    return folders


def check_same_prompts(folders: Sequence[Folder], baseline: Folder) -> None:
    for folder in folders:
        if folder.captions is not None and folder.captions != baseline.captions:
            first = next(i for i, (a, b) in enumerate(zip(folder.captions, baseline.captions)) if a != b)
            raise UserInputError(f"{folder.path} and {baseline.path} used different captions (first at index {first}); "
                                 "paired statistics and contact sheets need the same prompts")


class _DefaultModelUnavailable(Exception):
    """The default ImageReward model could not be loaded: the report goes on with saved scores or n/a."""


class Scorers:
    """Per-image scores of a folder for each metric, loading each model at most once and only when some folder has
    no valid saved scores."""

    def __init__(self, args, device, workers: int):
        self.args, self.device, self.workers = args, device, workers
        self.image_reward_loads = True  # until the default ImageReward model turns out not to be available
        self.h_sources = {H_METRICS[m][1]: h_metric.sources_for(H_METRICS[m][1], args.h_model)
                          for m in args.metrics if m in H_METRICS}

    @functools.cached_property
    def _clip(self) -> clip_score.OpenCLIPScore:
        return clip_score.OpenCLIPScore(self.args.clip_model, self.args.clip_pretrained, self.device)

    @functools.cached_property
    def _image_reward(self):
        model, tokenizer = self._ir_source
        try:
            return image_reward.load_scorer(model, self.device, tokenizer)
        except UserInputError as e:
            if self.args.ir_model is not None:  # asked for by name: a mistake to report
                raise
            raise _DefaultModelUnavailable(str(e)) from None

    @property
    def _ir_source(self) -> Tuple[str, str]:
        """(model, tokenizer) of the ImageReward network."""
        return (self.args.ir_model or image_reward.DEFAULT_MODEL,
                self.args.ir_tokenizer or image_reward.DEFAULT_TOKENIZER)

    def clip(self, folder: Folder) -> np.ndarray:
        model_id = clip_score.model_id(self.args.clip_model, self.args.clip_pretrained)
        return score_captioned_folder(folder.path, folder.paths, folder.captions, model_id, lambda: self._clip,
                                      CLIP.score_file, self.args.bs, self.workers, reuse=True,
                                      desc=f"CLIP score {folder.name}")

    @functools.cache
    def _h_metric(self, name: str):
        return h_metric.build(name, self.h_sources[name], self.device)

    def h(self, metric: str, folder: Folder) -> np.ndarray:
        """PickScore, aesthetic score or HPS v2.1 (evaluation/h_metric.py), saved scores reused."""
        column, name = H_METRICS[metric]
        return score_captioned_folder(folder.path, folder.paths, folder.captions,
                                      h_metric.fingerprint(name, self.h_sources[name]), lambda: self._h_metric(name),
                                      column.score_file, self.args.bs, self.workers, reuse=True,
                                      desc=f"{column.header.rstrip('↑')} {folder.name}")

    @functools.cached_property
    def _concept_models(self) -> concept_scores.ConceptModels:
        return concept_scores.ConceptModels(self.args.ae_clip_model, self.args.caption_model, self.device)

    def attend_excite(self, metric: str, folder: Folder) -> np.ndarray:
        """An Attend-and-Excite multi-concept metric (evaluation/concept_scores.py), saved scores reused (those
        `multi_concept.py` saved too)."""
        scores, _ = concept_scores.score_folder(self._concept_models, concept_scores.BY_KEY[metric], folder.path,
                                                folder.paths, folder.captions, self.args.bs, self.workers, reuse=True,
                                                desc=f"{AE_METRICS[metric].header.rstrip('↑')} {folder.name}")
        return scores

    def toy_exact(self, folder: Folder) -> np.ndarray:
        """The toy world's exact checker, 0/1 per image, saved verdicts reused (captions checked beforehand)."""
        return score_captioned_folder(folder.path, folder.paths, folder.captions, checker_id(),
                                      lambda: ExactChecker(folder.path), TOY_EXACT.score_file, self.args.bs,
                                      self.workers, reuse=True, desc=f"toy checker {folder.name}")

    def image_reward(self, folder: Folder) -> np.ndarray | None:
        """Saved or computed rewards; with the default model unavailable (e.g. offline), saved ones or None."""
        if self.image_reward_loads:
            try:
                return score_captioned_folder(folder.path, folder.paths, folder.captions,
                                              image_reward.model_id(*self._ir_source), lambda: self._image_reward,
                                              IMAGE_REWARD.score_file, self.args.bs, self.workers, reuse=True,
                                              desc=f"ImageReward {folder.name}")
            except _DefaultModelUnavailable as e:
                _warn(f"ImageReward not computed ({e}); pass --ir_model with a local copy, or --metrics fid clip")
                self.image_reward_loads = False
        return load_scores(os.path.join(folder.path, IMAGE_REWARD.score_file), len(folder.paths))
