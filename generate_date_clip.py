"""Generate images with DATE, h = CLIP similarity (the paper's DATE(h=CLIP))."""
from typing import List, Optional

from date.cli import ScorerSpec, generation_parser, resolve_model, run
from date.scorers.clip import CLIPScorer
from date.errors import exit_on_user_error
from date.flags import Parser


def build_parser() -> Parser:
    parser = generation_parser(__doc__)
    parser.add_argument("--clip_type", default="clip-vit-large-patch14", help="OpenAI CLIP variant used as h")
    parser.add_argument("--clip_model", default=None, help="CLIP hub id or local dir ('toy'); overrides --clip_type")
    parser.add_argument("--fp16_clip", action="store_true", help="run the CLIP scorer in half precision")
    return parser


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    model = resolve_model(args.clip_model, f"openai/{args.clip_type}", "clip")
    run(args, ScorerSpec("DATE_CLIP", model, args.fp16_clip, CLIPScorer.from_pretrained))


if __name__ == "__main__":
    main()
