"""Short labels that tell folders apart, for contact-sheet columns and plot bars.

Folder names of the generation scripts share a long common part (`DATE_CLIP_scheduler_DDIM_steps_50_w_8.0_seed_6…`)
and differ late (`_x0_taesd`, `_name_A`), so cutting a name to fit a column or a tick label makes folders look the
same. A label names a folder by its method and only the settings that differ between the folders shown together.
"""
import os
import re
from typing import Dict, List, Sequence

# date.io.outputs.folder_name: <prefix>_scheduler_<s>_steps_<n>_w_<w>_seed_<k>[_model_<m>][_x0_<d>][_name_<x>]
_FOLDER_NAME = re.compile(r"(?P<prefix>.+?)_scheduler_(?P<scheduler>[^_]+)_steps_(?P<steps>\d+)_w_(?P<w>[^_]+)"
                          r"_seed_(?P<seed>-?\d+)(?:_model_(?P<model>.+?))?(?:_x0_(?P<x0>.+?))?(?:_name_(?P<name>.+))?")
_SETTINGS = ("scheduler", "steps", "w", "seed", "model", "x0", "name")


def folder_labels(paths: Sequence[str]) -> List[str]:
    """One short label per folder, all distinct: the method and the settings that differ (`DATE_CLIP`,
    `DATE_CLIP x0=taesd`) for names of the generation scripts' scheme, otherwise what follows the name parts every
    folder shares; a label still shared gets its parent folder's name, then its position."""
    names = [os.path.basename(os.path.normpath(p)) for p in paths]
    parsed = [_FOLDER_NAME.fullmatch(n) for n in names]
    if all(parsed):
        labels = _by_settings([m.groupdict() for m in parsed])
    else:
        labels = _by_differing_suffix(names)
    parents = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
    labels = _unique(labels, [f"{parent}/{label}" for parent, label in zip(parents, labels)])
    return _unique(labels, [f"{label} #{i + 1}" for i, label in enumerate(labels)])


def _by_settings(fields: Sequence[Dict[str, str | None]]) -> List[str]:
    differing = [key for key in _SETTINGS if len({f[key] for f in fields}) > 1]
    return [" ".join([f["prefix"], *(f"{key}={f[key]}" for key in differing if f[key] is not None)]) for f in fields]


def _by_differing_suffix(names: Sequence[str]) -> List[str]:
    """Each name without the `_`-separated words all names start with (at least one word kept), `…` marking the cut."""
    words = [name.split("_") for name in names]
    shared = 0
    while (len(names) > 1 and all(len(w) > shared + 1 for w in words)
           and len({w[shared] for w in words}) == 1):
        shared += 1
    return [("…" if shared else "") + "_".join(w[shared:]) for w in words]


def _unique(labels: Sequence[str], alternatives: Sequence[str]) -> List[str]:
    """Each label that occurs more than once replaced by its alternative."""
    return [alternative if labels.count(label) > 1 else label for label, alternative in zip(labels, alternatives)]
