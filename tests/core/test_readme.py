"""README.md stays a five-minute read: short, narrow lines, one app-table row per installed app,
and every relative link in it and in docs/ points at a file that exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_LINES = 250
MAX_WIDTH = 100
#: [text](target) and ![alt](target); the target ends at the first space or closing bracket
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _apps() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(pyproject["project"]["entry-points"]["fedlab.apps"])


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _without_code(text: str) -> str:
    """The text outside fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_readme_is_short_and_narrow():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES
    wide = [(n, len(line)) for n, line in enumerate(lines, 1) if len(line) > MAX_WIDTH]
    assert wide == [], f"lines over {MAX_WIDTH} characters (line, width): {wide}"


def test_app_table_has_one_row_per_installed_app():
    rows = [
        line for line in _section(README.read_text(), "Apps").splitlines()
        if line.startswith("| `")
    ]  # fmt: skip
    named = [re.match(r"\| `([^`]+)` \|", row).group(1) for row in rows]
    assert sorted(named) == sorted(_apps()) and len(named) == len(set(named))
    for row in rows:  # each row links the app's page under docs/
        assert re.search(r"\]\(docs/[\w.-]+\.md\)", row), row


def test_commands_section_states_the_caps_and_overwrite_once():
    from fedlab import limits

    commands = _section(README.read_text(), "Commands")
    assert commands.count("--overwrite") >= 1 and "fedlab/limits.py" in commands
    assert README.read_text().count("fedlab/limits.py") == 1  # once, in the commands section
    for cap in (limits.MAX_INPUT_PIXELS, limits.MAX_OUTPUT_PIXELS):
        side = int(cap**0.5)
        assert f"{side} x {side}" in commands
    assert f"{limits.MAX_FRAMES:,}" in commands and f"{limits.MAX_FRAME_SIDE}" in commands
    assert f"{limits.MAX_MODEL_PARAMETERS // 10**6} M" in commands


def test_readme_keeps_the_set_up_commands_ci_runs():
    """.ci/run runs README step 1 (install) and step 2 (pytest), and names the test tiers."""
    text = README.read_text()
    assert '```bash\npip install -e ".[dev]"    # 1. install' in text
    assert "\npytest                     # 2. run the tests" in text
    for tier in ("pytest -m slow", "pytest -m extended"):
        assert tier in text


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a markdown page (lower case, punctuation dropped, spaces to
    hyphens; a repeated heading gets -1, -2, ...)."""
    counts: dict[str, int] = {}
    anchors: set[str] = set()
    for line in re.sub(r"```.*?```", "", page.read_text(), flags=re.S).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            count = counts.get(slug, 0)
            counts[slug] = count + 1
            anchors.add(f"{slug}-{count}" if count else slug)
    return anchors


@pytest.mark.parametrize(
    "page",
    [README, *sorted((ROOT / "docs").glob("*.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_relative_links_point_to_existing_files_and_headings(page: Path):
    missing = []
    for target in LINK.findall(_without_code(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, or an anchor in the same page
        path, _, anchor = target.partition("#")
        file = page.parent / path
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            missing.append(target)
    for target in LINK.findall(_without_code(page.read_text())):
        if target.startswith("#") and target[1:] not in _anchors(page):
            missing.append(target)
    assert missing == [], f"{page.name} links to missing files or headings: {missing}"
