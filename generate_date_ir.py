"""Generate images with DATE, h = ImageReward (the paper's DATE(h=ImageReward))."""
import functools
from typing import List, Optional

from date.cli import ScorerSpec, generation_parser, run
from date.errors import exit_on_user_error
from date.flags import Parser
from date.scorers.image_reward import ImageRewardScorer


def build_parser() -> Parser:
    parser = generation_parser(__doc__)
    parser.add_argument("--ir_model", default="THUDM/ImageReward", help="hub id or local dir with ImageReward.pt and med_config.json")
    parser.add_argument("--ir_tokenizer", default="bert-base-uncased", help="hub id or local dir of the BERT tokenizer")
    return parser


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    load = functools.partial(ImageRewardScorer.from_pretrained, tokenizer=args.ir_tokenizer)
    run(args, ScorerSpec("DATE_IR", args.ir_model, args.fp16 or args.dtype == "fp16", load))  # as the official DATE-IR with --fp16


if __name__ == "__main__":
    main()
