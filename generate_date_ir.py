"""Generate images with DATE, h = ImageReward (the paper's DATE(h=ImageReward))."""
from typing import List, Optional

from date.io.errors import exit_on_user_error
from date.run.loop import run
from date.run.methods import h_method
from date.run.parser import image_reward_parser


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    args = image_reward_parser(__doc__).parse_args(argv)
    half = args.fp16 or args.dtype == "fp16"  # as the official DATE-IR with --fp16
    run(args, h_method("ir", {"ir": args.ir_model, "ir_tokenizer": args.ir_tokenizer}, {"ir": half}))


if __name__ == "__main__":
    main()
