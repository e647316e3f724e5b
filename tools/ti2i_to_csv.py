"""Turn an editing benchmark's YAML (the format of DDPM_inversion's `test.yaml`, used for Plug-and-Play's
ImageNet-R-TI2I: a list of entries with `init_img`, `source_prompt` and `target_prompts`) into the edits file of
`edit_date.py`: one row `image,source_prompt,target_prompt` per target prompt, image paths relative to the CSV.

    python tools/ti2i_to_csv.py imagenetr-ti2i.yaml --root /data/imagenetr-ti2i --out ti2i_edits.csv

`init_img` is read as the official `main_run.py` reads it: relative to `--root` (default: the YAML's folder), a
leading `/` included (`/example_images/horse_mud.jpg` is `<root>/example_images/horse_mud.jpg`). A missing
`source_prompt` is the empty prompt, as in the official code. A file naming these fields otherwise is read with
`--image_key`, `--source_key`, `--targets_key`. The benchmark's images are not redistributed here.
"""
import csv
import io
import os
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from date.io.atomic import write_text  # noqa: E402
from date.io.errors import UserInputError, exit_on_user_error  # noqa: E402
from date.io.flags import Parser  # noqa: E402


def rows_from_yaml(path: str, root: Optional[str], out_dir: str, image_key: str = "init_img",
                   source_key: str = "source_prompt", targets_key: str = "target_prompts") -> List[List[str]]:
    import yaml

    if not os.path.isfile(path):
        raise UserInputError(f"YAML file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path} is not readable YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, list) or not data:
        raise UserInputError(f"{path}: expected a list of entries with init_img, source_prompt, target_prompts")
    root = root if root is not None else os.path.dirname(os.path.abspath(path))
    rows = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or image_key not in entry or targets_key not in entry:
            raise UserInputError(f"{path}: entry {index} lacks {image_key} or {targets_key}")
        targets = entry[targets_key]
        targets = [targets] if isinstance(targets, str) else list(targets or [])
        if not targets:
            raise UserInputError(f"{path}: entry {index} has no target prompts")
        image = os.path.join(root, str(entry[image_key]).strip().lstrip("/"))
        image = os.path.relpath(image, out_dir)
        source = str(entry.get(source_key) or "").strip()
        rows += [[image, source, str(target).strip()] for target in targets]
    return rows


@exit_on_user_error
def main(argv: Optional[Sequence[str]] = None) -> str:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("yaml", help="the benchmark's YAML file")
    p.add_argument("--root", default=None, help="folder the init_img paths are relative to (default: the YAML's)")
    p.add_argument("--out", required=True, help="the edits CSV to write")
    p.add_argument("--check", action="store_true", help="refuse an entry whose image is missing")
    p.add_argument("--image_key", default="init_img", help="the entries' key of the image path")
    p.add_argument("--source_key", default="source_prompt", help="the entries' key of the source prompt")
    p.add_argument("--targets_key", default="target_prompts", help="the entries' key of the target prompt(s)")
    args = p.parse_args(argv)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    rows = rows_from_yaml(args.yaml, args.root, out_dir, args.image_key, args.source_key, args.targets_key)
    if args.check:
        for image, _, _ in rows:
            path = os.path.normpath(os.path.join(out_dir, image))
            if not os.path.isfile(path):
                raise UserInputError(f"image not found: {path}")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["image", "source_prompt", "target_prompt"])
    writer.writerows(rows)
    os.makedirs(out_dir, exist_ok=True)
    write_text(args.out, text.getvalue())
    print(f"wrote {len(rows)} edits to {args.out}", file=sys.stderr)
    return args.out


if __name__ == "__main__":
    main()
