"""Build `assets/prompts/attend_excite.csv`: the 276 two-concept prompts of Attend-and-Excite, the prompt set the DATE
paper uses for multi-concept generation (docs/multi_concept.md).

Source: Chefer, Alaluf, Vinker, Wolf, Cohen-Or, "Attend-and-Excite: Attention-Based Semantic Guidance for Text-to-Image
Diffusion Models", SIGGRAPH 2023. The authors published their evaluation prompts as the JSON attachment
`a.e_prompts.txt` (issue 17 of github.com/yuval-alaluf/Attend-and-Excite, linked from that README's "Evaluation
Prompts"); github.com/Bomingmiao/NoiseDiffusion keeps a verbatim copy. The repository is under the MIT License,
Copyright (c) 2023 AttendAndExcite. Nothing of its code is used here: the word lists, templates and draws below are
written out as data, and tests/date/io/test_attend_excite_prompts.py checks that the CSV's three lists, dumped as the
authors' JSON (indent 4), hash to the published file's SHA-256: the same prompts, wording and order, byte for byte.

The set is a design: 12 animals, 12 objects (3 of them worn), 11 colors, and four templates. `animals` is every pair of
animals, `animals_objects` every animal with every object (a worn one "with", the others "and" in a drawn color),
`objects` every pair of objects, each in a drawn color. ANIMALS and OBJECTS are in the order the published pairs imply
(the first word of every pair comes earlier); nothing fixes an order of COLORS. What the design leaves open the authors
drew, and it is recorded here from their list: the order of the prompts and each color. The published wording has "a"
before every color and object ("a orange apple", "a glasses"); only the animal slots take "an" ("an elephant"), so the
templates keep it that way. The draws are checked against the design before anything is written.

    python tools/make_attend_excite_prompts.py [--out assets/prompts/attend_excite.csv]
"""
import argparse
import csv
import io
import itertools
import os
import sys
from typing import Iterable, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from date.io.atomic import write_text  # noqa: E402
from date.io.concepts import SEPARATOR  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "prompts",
                   "attend_excite.csv")

ANIMALS = ("cat", "dog", "bird", "bear", "lion", "horse", "elephant", "monkey", "frog", "turtle", "rabbit", "mouse")
OBJECTS = ("backpack", "glasses", "crown", "suitcase", "chair", "balloon", "bow", "car", "bowl", "bench", "clock",
           "apple")
WORN = ("glasses", "crown", "bow")  # an animal is "with" these, uncolored
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "gray", "black", "white")

ANIMALS_TEMPLATE = "{article1} {animal1} and {article2} {animal2}"
WORN_TEMPLATE = "{article} {animal} with a {object}"
COLORED_TEMPLATE = "{article} {animal} and a {color} {object}"
OBJECTS_TEMPLATE = "a {color1} {object1} and a {color2} {object2}"

# The authors' draws in their published order. Animal pairs: (animal1, animal2).
ANIMAL_PAIRS = (
    ("elephant", "rabbit"), ("dog", "frog"), ("bird", "mouse"), ("monkey", "frog"), ("horse", "monkey"),
    ("bird", "turtle"), ("bird", "lion"), ("lion", "monkey"), ("horse", "turtle"), ("bird", "monkey"), ("bear", "frog"),
    ("bear", "turtle"), ("dog", "elephant"), ("dog", "horse"), ("turtle", "mouse"), ("cat", "turtle"), ("dog", "mouse"),
    ("cat", "elephant"), ("cat", "bird"), ("dog", "monkey"), ("lion", "mouse"), ("bear", "lion"), ("bird", "elephant"),
    ("lion", "turtle"), ("dog", "bird"), ("bird", "rabbit"), ("elephant", "turtle"), ("lion", "elephant"),
    ("cat", "rabbit"), ("dog", "bear"), ("dog", "rabbit"), ("cat", "bear"), ("bird", "horse"), ("rabbit", "mouse"),
    ("bird", "bear"), ("bear", "monkey"), ("horse", "frog"), ("cat", "horse"), ("frog", "rabbit"), ("bear", "mouse"),
    ("monkey", "rabbit"), ("cat", "dog"), ("lion", "frog"), ("frog", "mouse"), ("dog", "lion"), ("lion", "rabbit"),
    ("elephant", "frog"), ("frog", "turtle"), ("cat", "lion"), ("horse", "rabbit"), ("cat", "monkey"),
    ("bear", "rabbit"), ("turtle", "rabbit"), ("elephant", "monkey"), ("bird", "frog"), ("lion", "horse"),
    ("bear", "horse"), ("bear", "elephant"), ("horse", "mouse"), ("dog", "turtle"), ("monkey", "mouse"),
    ("cat", "frog"), ("monkey", "turtle"), ("horse", "elephant"), ("cat", "mouse"), ("elephant", "mouse"),
)
# Animal and object: (animal, color, object), color None for a worn object.
ANIMAL_OBJECT_DRAWS = (
    ("horse", None, "glasses"), ("bear", None, "glasses"), ("monkey", "red", "car"), ("elephant", None, "bow"),
    ("frog", "purple", "balloon"), ("mouse", None, "bow"), ("bird", None, "crown"), ("turtle", "yellow", "bowl"),
    ("rabbit", "gray", "chair"), ("dog", "black", "apple"), ("rabbit", "white", "bench"), ("lion", "yellow", "clock"),
    ("turtle", "gray", "backpack"), ("elephant", "green", "balloon"), ("monkey", "orange", "apple"),
    ("lion", "red", "car"), ("lion", None, "crown"), ("bird", "purple", "bench"), ("rabbit", "orange", "backpack"),
    ("rabbit", "orange", "apple"), ("monkey", "green", "bowl"), ("frog", "red", "suitcase"),
    ("monkey", "green", "balloon"), ("cat", None, "glasses"), ("bear", "blue", "clock"), ("cat", "gray", "bench"),
    ("bear", None, "crown"), ("lion", None, "bow"), ("bear", "red", "balloon"), ("bird", "black", "backpack"),
    ("horse", "pink", "balloon"), ("turtle", "yellow", "car"), ("lion", None, "glasses"), ("cat", "yellow", "balloon"),
    ("horse", "yellow", "clock"), ("dog", None, "glasses"), ("horse", "blue", "backpack"), ("frog", None, "bow"),
    ("elephant", None, "glasses"), ("mouse", "red", "bench"), ("bird", "brown", "balloon"),
    ("monkey", "yellow", "backpack"), ("turtle", "pink", "balloon"), ("cat", "red", "apple"),
    ("monkey", "brown", "bench"), ("rabbit", None, "glasses"), ("bear", "gray", "bench"), ("turtle", "blue", "clock"),
    ("monkey", "blue", "chair"), ("turtle", "blue", "chair"), ("dog", None, "bow"), ("elephant", "black", "chair"),
    ("mouse", "purple", "chair"), ("bear", "white", "car"), ("lion", "black", "backpack"), ("dog", None, "crown"),
    ("horse", "green", "apple"), ("dog", "gray", "clock"), ("dog", "purple", "car"), ("dog", "gray", "bowl"),
    ("monkey", None, "bow"), ("mouse", "blue", "clock"), ("bird", "black", "bowl"), ("horse", "white", "car"),
    ("mouse", "pink", "apple"), ("bear", "orange", "backpack"), ("elephant", "yellow", "clock"),
    ("bird", "green", "chair"), ("mouse", "black", "balloon"), ("turtle", "white", "bench"), ("bird", None, "bow"),
    ("turtle", None, "crown"), ("bird", "yellow", "car"), ("frog", "orange", "car"), ("dog", "pink", "bench"),
    ("frog", None, "crown"), ("frog", "green", "bowl"), ("frog", "pink", "bench"), ("horse", None, "bow"),
    ("bird", "yellow", "apple"), ("monkey", None, "crown"), ("cat", "blue", "backpack"), ("turtle", "pink", "apple"),
    ("dog", "orange", "chair"), ("horse", "green", "suitcase"), ("elephant", None, "crown"),
    ("monkey", "orange", "suitcase"), ("turtle", "orange", "suitcase"), ("lion", "gray", "apple"),
    ("mouse", None, "crown"), ("mouse", None, "glasses"), ("horse", "brown", "bowl"), ("monkey", "yellow", "clock"),
    ("turtle", None, "bow"), ("dog", "brown", "backpack"), ("cat", "purple", "bowl"), ("lion", "white", "bench"),
    ("rabbit", "blue", "bowl"), ("lion", "brown", "balloon"), ("horse", "pink", "chair"),
    ("elephant", "green", "bench"), ("rabbit", "white", "balloon"), ("elephant", "pink", "backpack"),
    ("lion", "orange", "suitcase"), ("elephant", "orange", "apple"), ("elephant", "green", "suitcase"),
    ("horse", None, "crown"), ("bear", None, "bow"), ("rabbit", "yellow", "suitcase"), ("horse", "blue", "bench"),
    ("dog", "green", "suitcase"), ("mouse", "red", "car"), ("cat", "black", "chair"), ("bear", "red", "suitcase"),
    ("rabbit", "gray", "clock"), ("bear", "pink", "apple"), ("lion", "white", "chair"), ("rabbit", None, "crown"),
    ("mouse", "purple", "bowl"), ("frog", "black", "apple"), ("rabbit", None, "bow"), ("mouse", "pink", "suitcase"),
    ("lion", "pink", "bowl"), ("frog", "black", "chair"), ("frog", "green", "clock"), ("bear", "white", "chair"),
    ("elephant", "brown", "car"), ("turtle", None, "glasses"), ("cat", "black", "suitcase"), ("cat", "yellow", "car"),
    ("frog", "yellow", "backpack"), ("bird", "black", "suitcase"), ("cat", None, "crown"), ("rabbit", "yellow", "car"),
    ("cat", None, "bow"), ("bird", "white", "clock"), ("cat", "green", "clock"), ("bear", "purple", "bowl"),
    ("monkey", None, "glasses"), ("frog", None, "glasses"), ("elephant", "green", "bowl"), ("bird", None, "glasses"),
    ("dog", "blue", "balloon"), ("mouse", "brown", "backpack"),
)
# Object pairs: (color1, object1, color2, object2).
OBJECT_PAIRS = (
    ("pink", "crown", "purple", "bow"), ("blue", "clock", "blue", "apple"), ("blue", "balloon", "orange", "bench"),
    ("pink", "crown", "red", "chair"), ("orange", "chair", "blue", "clock"), ("purple", "bowl", "black", "bench"),
    ("green", "glasses", "black", "crown"), ("purple", "chair", "red", "bow"), ("yellow", "glasses", "black", "car"),
    ("orange", "backpack", "purple", "car"), ("white", "balloon", "white", "apple"),
    ("brown", "suitcase", "black", "clock"), ("yellow", "backpack", "purple", "chair"),
    ("gray", "backpack", "green", "clock"), ("blue", "crown", "red", "balloon"), ("gray", "suitcase", "black", "bowl"),
    ("brown", "balloon", "pink", "car"), ("black", "backpack", "green", "bow"), ("blue", "balloon", "blue", "bow"),
    ("white", "bow", "white", "car"), ("orange", "bowl", "purple", "apple"), ("brown", "chair", "white", "bench"),
    ("purple", "crown", "blue", "suitcase"), ("yellow", "bow", "orange", "bench"),
    ("yellow", "glasses", "brown", "bow"), ("red", "glasses", "red", "suitcase"), ("pink", "bow", "gray", "apple"),
    ("gray", "crown", "white", "clock"), ("black", "car", "white", "clock"), ("brown", "bowl", "green", "clock"),
    ("green", "backpack", "yellow", "crown"), ("orange", "glasses", "pink", "clock"),
    ("purple", "chair", "orange", "bowl"), ("orange", "suitcase", "brown", "bench"),
    ("white", "glasses", "orange", "balloon"), ("yellow", "backpack", "gray", "apple"),
    ("green", "bench", "red", "apple"), ("gray", "backpack", "yellow", "glasses"),
    ("green", "glasses", "yellow", "chair"), ("white", "glasses", "gray", "apple"),
    ("gray", "suitcase", "brown", "bow"), ("white", "car", "black", "bowl"), ("purple", "car", "pink", "apple"),
    ("gray", "crown", "purple", "apple"), ("orange", "car", "red", "bench"), ("red", "suitcase", "blue", "apple"),
    ("red", "backpack", "yellow", "bowl"), ("red", "bench", "yellow", "clock"),
    ("black", "backpack", "pink", "balloon"), ("blue", "suitcase", "gray", "balloon"),
    ("yellow", "glasses", "gray", "bowl"), ("white", "suitcase", "white", "chair"),
    ("purple", "crown", "blue", "bench"), ("yellow", "bow", "pink", "bowl"), ("green", "backpack", "brown", "suitcase"),
    ("green", "glasses", "black", "bench"), ("white", "bow", "black", "clock"), ("red", "crown", "black", "bowl"),
    ("green", "chair", "purple", "car"), ("white", "chair", "gray", "balloon"), ("pink", "chair", "gray", "apple"),
    ("yellow", "suitcase", "yellow", "car"), ("green", "backpack", "purple", "bench"), ("black", "crown", "red", "car"),
    ("green", "balloon", "pink", "bowl"), ("purple", "balloon", "white", "clock"),
)

Row = Tuple[str, str, str]  # caption, category, concepts


def article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def check(category: str, drawn: Iterable[Tuple[str, str]], design: Iterable[Tuple[str, str]]) -> None:
    """Each pair of the design drawn exactly once, in list order: a slip in the draws fails here, not in a benchmark."""
    if sorted(drawn) != sorted(design):
        raise ValueError(f"the {category} draws do not cover the design exactly once")


def check_draws() -> None:
    check("animals", ANIMAL_PAIRS, itertools.combinations(ANIMALS, 2))
    check("animals_objects", [(animal, obj) for animal, _, obj in ANIMAL_OBJECT_DRAWS],
          itertools.product(ANIMALS, OBJECTS))
    check("objects", [(object1, object2) for _, object1, _, object2 in OBJECT_PAIRS],
          itertools.combinations(OBJECTS, 2))
    for animal, color, obj in ANIMAL_OBJECT_DRAWS:
        if (color is None) != (obj in WORN):
            raise ValueError(f"{animal} and {obj}: a worn object has no color, every other one has")
    drawn = {color for _, color, _ in ANIMAL_OBJECT_DRAWS} - {None}
    drawn |= {color for color1, _, color2, _ in OBJECT_PAIRS for color in (color1, color2)}
    if not drawn <= set(COLORS):
        raise ValueError(f"drawn colors outside COLORS: {sorted(drawn - set(COLORS))}")


def rows() -> List[Row]:
    """The 276 rows in the published order: animals, animals_objects, objects."""
    result = []
    for animal1, animal2 in ANIMAL_PAIRS:
        caption = ANIMALS_TEMPLATE.format(article1=article(animal1), animal1=animal1, article2=article(animal2),
                                          animal2=animal2)
        result.append((caption, "animals", f"{animal1}{SEPARATOR}{animal2}"))
    for animal, color, obj in ANIMAL_OBJECT_DRAWS:
        template = WORN_TEMPLATE if obj in WORN else COLORED_TEMPLATE
        caption = template.format(article=article(animal), animal=animal, color=color, object=obj)
        result.append((caption, "animals_objects", f"{animal}{SEPARATOR}{obj}"))
    for color1, object1, color2, object2 in OBJECT_PAIRS:
        caption = OBJECTS_TEMPLATE.format(color1=color1, object1=object1, color2=color2, object2=object2)
        result.append((caption, "objects", f"{object1}{SEPARATOR}{object2}"))
    return result


def csv_text(table: Sequence[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["caption", "category", "concepts"])
    writer.writerows(table)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT, help="CSV file to write (default: the bundled one)")
    out = parser.parse_args().out
    check_draws()
    table = rows()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_text(out, csv_text(table))
    print(f"wrote {len(table)} prompts to {out}")


if __name__ == "__main__":
    main()
