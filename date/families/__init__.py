"""One small adapter per pipeline family; `family_of(pipe)` picks it from the pipeline's class."""
from ..errors import UserInputError
from .base import Family
from .flux import FLUX
from .pixart import PIXART
from .sd import SD
from .sd3 import SD3
from .sdxl import SDXL

FAMILIES = (SD, SDXL, SD3, FLUX, PIXART)
PIPELINES = {name: family for family in FAMILIES for name in family.pipelines}


def family_of(pipe) -> Family:
    name = type(pipe).__name__
    if name not in PIPELINES:
        raise UserInputError(f"DATE does not support {name}; supported pipelines: {', '.join(sorted(PIPELINES))}")
    return PIPELINES[name]


__all__ = ["FAMILIES", "PIPELINES", "Family", "family_of"]
