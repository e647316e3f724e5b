"""The package layout is layered: every import of the `date` package points down, never up or sideways across roles."""
import ast
import os

from tests.support.paths import REPO

# A module may import from its own layer and the layers below it. The method (date's own modules) rides diffusers
# through date.pipeline and scores with date.scorers; baselines sit beside it; the batch job uses them all.
LAYERS = {
    "date.io": 0,
    "date.pipeline": 1,
    "date.scorers": 1,
    "date": 2,  # the method: sampling, step, objective, update, memory
    "date.toy": 2,
    "date.methods": 3,
    "date.run": 4,
}


def role(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in LAYERS else "date"


def date_imports(path: str):
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "date":
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "date")


def test_imports_point_down():
    upward = []
    for folder, _, files in os.walk(os.path.join(REPO, "date")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            if module == "date":
                continue  # the public names, loaded lazily from every layer
            for target in date_imports(path):
                same = role(target) == role(module)
                if not same and LAYERS[role(target)] >= LAYERS[role(module)]:
                    upward.append(f"{module} imports {target}")
    assert not upward, upward
