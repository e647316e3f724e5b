"""Generate images with DATE for any evaluation function h: `--h clip`, `ir`, `pickscore`, `aesthetic`, `hps`, or a
weighted sum such as `--h clip:1,ir:0.5` (DATE's step is normalized, so weights set the mix of directions); or with
a baseline method under the same harness: `--method ug` (Universal Guidance by the same h), `--method ebca`
(energy-based cross-attention, no h), `--method ae` / `conform` (Attend-and-Excite, CONFORM: latent updates on the
concepts' attention maps, no h), or `ae+date` / `conform+date` (those latent updates and DATE's embedding updates)."""
from typing import List, Optional

from date.io.errors import exit_on_user_error
from date.run.loop import run
from date.run.methods import method_from_flags
from date.run.parser import any_h_parser


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    args = any_h_parser(__doc__).parse_args(argv)
    run(args, method_from_flags(args))


if __name__ == "__main__":
    main()
