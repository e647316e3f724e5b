"""The two concept words of a two-concept caption ("a cat and a frog" -> cat, frog).

Attention-steering methods (Attend-and-Excite, CONFORM) need the words to find their tokens, and the multi-concept
metrics need them to score each object on its own. A caption file names them in its `concepts` column ("cat;frog");
where that column is missing, the words are read off the grammar of the Attend-and-Excite prompt set
(`assets/prompts/attend_excite.csv`, docs/multi_concept.md): two noun phrases
"a[n] [color] noun" joined by "and" or "with", the concept being each phrase's noun.
"""
import re
from typing import Tuple

from date.io.errors import UserInputError

SEPARATOR = ";"

_PHRASE = r"an? (?:[a-z]+ )?([a-z]+)"  # the article, an optional attribute (a color), the noun
_GRAMMAR = re.compile(rf"{_PHRASE} (?:and|with) {_PHRASE}")


def caption_concepts(caption: str) -> Tuple[str, str]:
    """The nouns of a caption in the Attend-and-Excite grammar: "a red car and a blue bow" -> ("car", "bow"),
    "a horse with a glasses" -> ("horse", "glasses"). Anything else is one clear error naming the fix."""
    match = _GRAMMAR.fullmatch(caption)
    if match is None:
        raise UserInputError(f"cannot read two concepts from the caption {caption!r} (expected 'a[n] [color] noun "
                             "and|with a[n] [color] noun'); name them in a 'concepts' column, e.g. cat;frog")
    return match.group(1), match.group(2)


def concepts(caption: str, field: str | None = None) -> Tuple[str, str]:
    """The two concepts of one caption-file row: its `concepts` field ("cat;frog") when the file has that column,
    otherwise parsed from the caption. A field must name two words of its caption, or no token could be found."""
    if field is None:
        return caption_concepts(caption)
    words = tuple(word.strip() for word in field.split(SEPARATOR))
    if len(words) != 2 or not all(words):
        raise UserInputError(f"concepts {field!r} of the caption {caption!r}: expected two words separated by "
                             f"'{SEPARATOR}', e.g. cat;frog")
    for word in words:
        if not re.search(rf"(?<!\w){re.escape(word)}(?!\w)", caption):
            raise UserInputError(f"concept {word!r} is not a word of its caption {caption!r}")
    first, second = words
    return first, second
