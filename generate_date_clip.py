"""Generate images with DATE, h = CLIP similarity (the paper's DATE(h=CLIP))."""
from typing import List, Optional

from date.io.errors import exit_on_user_error
from date.run.loading import resolve_model
from date.run.loop import run
from date.run.methods import h_method
from date.run.parser import clip_parser


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    args = clip_parser(__doc__).parse_args(argv)
    model = resolve_model(args.clip_model, f"openai/{args.clip_type}", "clip")
    run(args, h_method("clip", {"clip": model}, {"clip": args.fp16_clip}))


if __name__ == "__main__":
    main()
