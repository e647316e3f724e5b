"""The README stays a front door, and every relative link in the README and docs/ leads somewhere.

Links are checked as GitHub renders them: a relative target must be an existing file or folder, and a `#anchor`
(in the same page or `page.md#anchor`) must be the slug of a heading in the target page. Fenced code blocks and
inline code are not markdown, so links and headings inside them are ignored.
"""
import glob
import os
import re
from urllib.parse import unquote

import pytest

from tests.support.paths import REPO

README = os.path.join(REPO, "README.md")
MAX_README_LINES = 250

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def doc_pages():
    return [README, *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]


def prose_lines(text):
    """The lines of a markdown text outside fenced code blocks, with their line numbers."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def slug(heading):
    """GitHub's anchor for a heading: the rendered text, lowercased, punctuation dropped (hyphens and underscores
    kept), spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = INLINE_CODE.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """Every anchor a page offers, duplicates numbered as GitHub does (`name`, `name-1`, ...)."""
    seen, result = {}, set()
    with open(path, encoding="utf-8") as f:
        for _, line in prose_lines(f.read()):
            match = HEADING.match(line)
            if not match:
                continue
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path):
    with open(path, encoding="utf-8") as f:
        for number, line in prose_lines(f.read()):
            for match in LINK.finditer(INLINE_CODE.sub("", line)):
                yield number, match.group(1)


def broken_links(path):
    """`file:line: target (why)` for each relative link of `path` that leads nowhere."""
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        where = f"{os.path.relpath(path, REPO)}:{number}: {target}"
        destination = os.path.normpath(os.path.join(os.path.dirname(path), unquote(file_part))) if file_part else path
        if not os.path.exists(destination):
            problems.append(f"{where} (no such file)")
            continue
        if anchor:
            if not destination.endswith(".md") or os.path.isdir(destination):
                problems.append(f"{where} (an anchor into a file that is not a markdown page)")
            elif unquote(anchor).lower() not in anchors(destination):
                problems.append(f"{where} (no heading with that anchor)")
    return problems


def test_readme_is_a_front_door():
    with open(README, encoding="utf-8") as f:
        count = len(f.read().splitlines())
    assert count <= MAX_README_LINES, f"README.md has {count} lines; move details into docs/ (at most {MAX_README_LINES})"


def test_docs_exist_and_the_readme_links_every_page():
    pages = doc_pages()[1:]
    assert pages, "docs/ has no pages"
    linked = {os.path.normpath(os.path.join(REPO, target.partition("#")[0])) for _, target in links(README)}
    assert not [os.path.relpath(p, REPO) for p in pages if p not in linked]


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_resolves(page):
    assert not broken_links(page)


def test_the_readme_states_the_command_ci_runs():
    """CI runs a fixed test command; the README must state exactly that command in a code block."""
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f if line.strip().startswith("python -m pytest")]
    assert len(ci) == 1, ci
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert re.search(r"```bash\n" + re.escape(ci[0]) + r"\n```", text), f"README.md must show `{ci[0]}` in a bash block"


def test_the_link_check_catches_broken_links(tmp_path):
    """The checker itself: a missing file, a missing anchor in the page and in another page are each reported."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A section, with `code`!\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n"
        "[ok](other.md) [ok](other.md#a-section-with-code) [ok](#title) [ext](https://example.com/x.md)\n"
        "`[in code](nowhere.md)`\n```\n[in a block](nowhere.md)\n```\n"
        "[bad](missing.md) [bad](other.md#no-such-section) [bad](#no-such-heading)\n",
        encoding="utf-8")
    problems = broken_links(str(page))
    assert len(problems) == 3, problems
    assert "missing.md (no such file)" in problems[0]
    assert all("no heading" in p for p in problems[1:]), problems


@pytest.mark.parametrize("heading, expected", [
    ("Why not SD 1.5's schedule as is", "why-not-sd-15s-schedule-as-is"),
    ("Evaluation functions h (`generate_date.py --h`)", "evaluation-functions-h-generate_datepy---h"),
    ("Baselines under the same harness: Universal Guidance and EBCA",
     "baselines-under-the-same-harness-universal-guidance-and-ebca"),
])
def test_slugs_follow_github(heading, expected):
    assert slug(heading) == expected
