"""The bundled Attend-and-Excite prompt set is the published one, its builder reproduces it, and every caption's
concepts can be read back from its grammar (date.io.concepts)."""
import csv
import hashlib
import json
import os
import subprocess
import sys

import pytest

from date.io.captions import read_captions
from date.io.concepts import caption_concepts, concepts
from date.io.errors import UserInputError
from tests.support.paths import REPO

BUNDLED = os.path.join(REPO, "assets", "prompts", "attend_excite.csv")
BUILDER = os.path.join(REPO, "tools", "make_attend_excite_prompts.py")
# SHA-256 of the authors' attachment a.e_prompts.txt (yuval-alaluf/Attend-and-Excite issue 17; the verbatim copy in
# Bomingmiao/NoiseDiffusion at commit 24a5883b): a JSON dict of the three lists, indent 4, no final newline.
PUBLISHED_SHA256 = "4f6cfdd1ea02cbe3436664699410b25a4f631c43ec220cccf1658713afff69f0"


def bundled_rows():
    with open(BUNDLED, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_columns_and_counts_per_category():
    rows = bundled_rows()
    assert list(rows[0]) == ["caption", "category", "concepts"]
    counts = {}
    for row in rows:
        counts[row["category"]] = counts.get(row["category"], 0) + 1
    assert counts == {"animals": 66, "animals_objects": 144, "objects": 66}
    assert len(rows) == 276


def test_the_categories_reproduce_the_published_file():
    """Rebuilt as the authors' JSON (categories in file order), the CSV's captions hash to their attachment's bytes."""
    lists = {}
    for row in bundled_rows():
        lists.setdefault(row["category"], []).append(row["caption"])
    assert hashlib.sha256(json.dumps(lists, indent=4).encode()).hexdigest() == PUBLISHED_SHA256


def test_every_caption_is_unique_and_parses_back_to_its_concepts():
    rows = bundled_rows()
    assert len({row["caption"] for row in rows}) == len(rows)
    for row in rows:
        expected = tuple(row["concepts"].split(";"))
        assert caption_concepts(row["caption"]) == expected, row
        assert concepts(row["caption"], row["concepts"]) == expected, row
        assert concepts(row["caption"]) == expected, row


def test_the_caption_reader_reads_the_bundled_file():
    assert read_captions(BUNDLED) == [row["caption"] for row in bundled_rows()]


def test_the_builder_writes_the_bundled_file_byte_for_byte(tmp_path):
    out = tmp_path / "prompts" / "attend_excite.csv"
    subprocess.run([sys.executable, BUILDER, "--out", str(out)], check=True, capture_output=True, cwd=tmp_path)
    with open(BUNDLED, "rb") as f:
        assert out.read_bytes() == f.read()


@pytest.mark.parametrize("caption, expected", [
    ("a cat and a frog", ("cat", "frog")),
    ("an elephant with a bow", ("elephant", "bow")),
    ("a monkey and a orange apple", ("monkey", "apple")),
    ("a pink crown and a purple bow", ("crown", "bow")),
])
def test_the_grammar(caption, expected):
    assert caption_concepts(caption) == expected


@pytest.mark.parametrize("caption", ["a cat", "a cat and a dog and a frog", "cat and frog", "a cat and a frog.",
                                     "A cat and a frog", "a very big cat and a frog", ""])
def test_captions_outside_the_grammar_are_one_clear_error(caption):
    with pytest.raises(UserInputError, match="concepts' column"):
        caption_concepts(caption)


@pytest.mark.parametrize("field", ["cat", "cat;frog;dog", "cat;", "cat;dog"])
def test_a_concepts_field_must_name_two_words_of_its_caption(field):
    with pytest.raises(UserInputError):
        concepts("a cat and a frog", field)


def test_a_concepts_field_overrides_the_grammar():
    assert concepts("a teddy bear next to a cup", "teddy bear; cup") == ("teddy bear", "cup")
