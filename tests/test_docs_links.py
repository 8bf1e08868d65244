"""Every relative link and #anchor in README.md and docs/*.md resolves: the file or folder exists, and the anchor is a
heading of the target Markdown file under GitHub's slug rules. External http(s) and mailto links are not checked."""

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            lines.append(line)
    return lines


def rendered(heading: str) -> str:
    """A heading's text as GitHub renders it: links become their text, emphasis and code marks go."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[*`]|(?<!\w)_|_(?!\w)", "", heading)


def slug(text: str) -> str:
    """GitHub's anchor for a heading text: lowercase; keep letters, digits, marks, '-', '_' and spaces (any script);
    drop all other punctuation and symbols; spaces become hyphens."""
    kept = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the headings of a Markdown file, duplicates numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        result.update(HTML_ANCHOR.findall(line))
        if match := HEADING.match(line):
            base = slug(rendered(match.group(2)))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return result


def dead_links(path: Path) -> list[str]:
    """'file:line: target (why)' for every relative link of a Markdown file that does not resolve."""
    problems = []
    for number, line in enumerate(prose_lines(path.read_text(encoding="utf-8")), 1):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or not target:
                continue  # http(s), mailto: not checked
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if not linked.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where} (no heading with anchor #{anchor} in {linked.relative_to(ROOT)})")
    return problems


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path):
    assert not (problems := dead_links(path)), "dead links:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("Checkpoints, resuming, evaluation", "checkpoints-resuming-evaluation"),
        (
            "Escaping the local optimum: a soft-policy PR2 (the default)",
            "escaping-the-local-optimum-a-soft-policy-pr2-the-default",
        ),
        ("`pr2_discrete.py`: PR2 with discrete actions", "pr2_discretepy-pr2-with-discrete-actions"),
        ("What the opponent model adds ([tables](x.md))", "what-the-opponent-model-adds-tables"),
        ("PR2-Q vs IGA — ρ ≥ 0.5 × 2", "pr2-q-vs-iga--ρ--05--2"),
        ("Deep discrete PR2 (`--algorithm deep`, the default)", "deep-discrete-pr2---algorithm-deep-the-default"),
    ],
)
def test_slugs_follow_github(heading, anchor):
    assert slug(rendered(heading)) == anchor


def test_a_dead_link_or_anchor_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "target.md").write_text("# Title\n\n## Same\n\n## Same\n\n```\n## Not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](target.md#same-1) [ok](target.md#title) [ok](#local) ![ok](target.md) [web](https://x.org/y#z)\n"
        "`[in code](missing.md)`\n"
        "## Local\n"
        "[gone](missing.md) [bad](target.md#same-2) [bad](target.md#not-a-heading) [bad](#nowhere)\n"
    )
    assert [problem.split(": ")[1].split(" ")[0] for problem in dead_links(page)] == [
        "missing.md",
        "target.md#same-2",
        "target.md#not-a-heading",
        "#nowhere",
    ]
