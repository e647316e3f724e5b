"""Generate images with DATE for any evaluation function h: `--h clip`, `ir`, `pickscore`, `aesthetic`, `hps`, or a
weighted sum such as `--h clip:1,ir:0.5` (DATE's step is normalized, so weights set the mix of directions)."""
from date.cli import generation_parser, h_spec, run
from date.errors import exit_on_user_error


@exit_on_user_error
def main() -> None:
    parser = generation_parser(__doc__)
    parser.add_argument("--h", default="clip", help="clip, ir, pickscore, aesthetic, hps, or name:weight,... (default clip)")
    parser.add_argument("--h_model", action="append", default=[], metavar="NAME=PATH_OR_ID",
                        help="model of an h (repeatable): clip, ir, ir_tokenizer, pickscore, pickscore_processor, "
                             "aesthetic, aesthetic_clip, hps; clip=toy is the toy CLIP")
    parser.add_argument("--fp16_clip", action="store_true", help="run the CLIP scorer in half precision")
    args = parser.parse_args()
    run(args, h_spec(args))


if __name__ == "__main__":
    main()
