"""Reward-model files: from a local folder (or file) or a hub repo, read as plain state dicts; a bad one is one line."""
import os
from typing import Dict, Optional, Tuple

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from date.io.errors import UserInputError
from date.io.loading import loading, model_path


def model_file(source: str, filename: str, hint: str, required: bool = True) -> Optional[str]:
    """`filename` of the model folder or hub repo `source` (or `source` itself, if it is that file); None when an
    optional one is absent. `hint` says what the folder should hold."""
    if os.path.isfile(source):
        return source
    if os.path.isdir(source):
        path = os.path.join(source, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise UserInputError(f"{source} has no {filename} ({hint})")
        return None
    try:
        return hf_hub_download(source, filename)
    except EntryNotFoundError:
        if required:
            raise
        return None


def read_state_dict(path: str, expected: str, key: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Tensors of a torch checkpoint (under `key` when the file nests them, as training checkpoints do)."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch reports unreadable files with many exception types
        raise UserInputError(f"cannot read checkpoint {path}: {str(e).strip().splitlines()[0]}") from None
    if key is not None and isinstance(state_dict, dict) and key in state_dict:
        state_dict = state_dict[key]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserInputError(f"{path} is not a state dict of tensors like {expected}")
    return state_dict


def load_checkpoint(name_or_path: str, filename: str, what: str,
                    key: Optional[str] = None) -> Tuple[str, Dict[str, torch.Tensor]]:
    """(path, state dict) of `filename` given as the file itself, a folder holding it or a hub repo; any problem is one
    line naming `what`."""
    source = name_or_path if os.path.isfile(name_or_path) else model_path(name_or_path)
    with loading(what, name_or_path):
        path = model_file(source, filename, f"{what}'s {filename}")
        return path, read_state_dict(path, filename, key)
