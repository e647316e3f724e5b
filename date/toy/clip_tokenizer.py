"""Build the real CLIP BPE tokenizer offline, from the merges file that open_clip ships.

The 49,408-token vocabulary of OpenAI CLIP (and so of Stable Diffusion v1) is fully determined by the BPE merge list:
byte symbols, the same with an end-of-word marker, one token per merge, then the two special tokens.
"""
import gzip
import importlib.util
import json
import os

from transformers import CLIPTokenizer

NUM_MERGES = 49152 - 256 - 2


def _byte_symbols() -> list[str]:
    """The reversible byte -> printable unicode table used by GPT-2 style BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _open_clip_merges_path() -> str:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip is required to build the CLIP tokenizer offline")
    return os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz")


def save_clip_tokenizer(out_dir: str) -> CLIPTokenizer:
    """Write vocab.json / merges.txt of the OpenAI CLIP tokenizer to out_dir and return the loaded tokenizer."""
    with gzip.open(_open_clip_merges_path(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : NUM_MERGES + 1]
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        os.path.join(out_dir, "vocab.json"), os.path.join(out_dir, "merges.txt"), model_max_length=77, pad_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer
