"""One small adapter per pipeline family; `family_of(pipe)` picks it from the pipeline's class."""
from date.io.errors import UserInputError
from date.pipeline.families.base import Family
from date.pipeline.families.flux import FLUX
from date.pipeline.families.pixart import PIXART
from date.pipeline.families.sd import SD
from date.pipeline.families.sd3 import SD3
from date.pipeline.families.sdxl import SDXL

FAMILIES = (SD, SDXL, SD3, FLUX, PIXART)
PIPELINES = {name: family for family in FAMILIES for name in family.pipelines}


def family_of(pipeline) -> Family:
    """The family of a pipeline, given as the pipeline itself or as its class name (from model_index.json)."""
    name = pipeline if isinstance(pipeline, str) else type(pipeline).__name__
    if name not in PIPELINES:
        raise UserInputError(f"DATE does not support {name}; supported pipelines: {', '.join(sorted(PIPELINES))}")
    return PIPELINES[name]


__all__ = ["FAMILIES", "PIPELINES", "Family", "family_of"]
