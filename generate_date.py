"""Generate images with DATE for any evaluation function h: `--h clip`, `ir`, `pickscore`, `aesthetic`, `hps`, or a
weighted sum such as `--h clip:1,ir:0.5` (DATE's step is normalized, so weights set the mix of directions); or with
a baseline method under the same harness: `--method ug` (Universal Guidance by the same h) or `--method ebca`
(energy-based cross-attention, no h)."""
from typing import List, Optional

from date.cli import generation_parser, h_spec, run
from date.errors import exit_on_user_error
from date.flags import Parser, finite_float, non_negative_int, positive_float, positive_int


def build_parser() -> Parser:
    parser = generation_parser(__doc__)
    parser.add_argument("--method", default="date", choices=["date", "ug", "ebca"], help="date (default), ug or ebca")
    parser.add_argument("--h", default=None, help="clip, ir, pickscore, aesthetic, hps, or name:weight,... (default clip)")
    parser.add_argument("--h_model", action="append", default=[], metavar="NAME=PATH_OR_ID",
                        help="model of an h (repeatable): clip, ir, ir_tokenizer, pickscore, pickscore_processor, "
                             "aesthetic, aesthetic_clip, hps; clip=toy is the toy CLIP")
    parser.add_argument("--fp16_clip", action="store_true", help="run the CLIP scorer in half precision")
    parser.add_argument("--optim_forward_guidance_wt", type=finite_float, default=5.0, help="UG: forward guidance weight s")
    parser.add_argument("--optim_num_steps", type=positive_int, default=1, help="UG: self-recurrence steps k")
    parser.add_argument("--optim_backward_guidance", action="store_true", help="UG: backward guidance on x0 (latent)")
    parser.add_argument("--optim_max_iters", type=non_negative_int, default=1, help="UG: backward guidance Adam steps m")
    parser.add_argument("--optim_lr", type=positive_float, default=1e-2, help="UG: backward guidance learning rate")
    parser.add_argument("--gamma_attn", type=finite_float, default=0.01, help="EBCA: step of the attention term (official 0.01)")
    parser.add_argument("--gamma_norm", type=finite_float, default=0.02, help="EBCA: step of the norm prior (official 0.02)")
    return parser


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    run(args, h_spec(args))


if __name__ == "__main__":
    main()
