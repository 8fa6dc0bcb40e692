"""The documentation leads somewhere: links, anchors and section references resolve, and every setting is documented.

* Every relative link in a tracked Markdown file names a tracked file or folder and, with ``#anchor``,
  a heading of that file (GitHub's slug rules).
* Every section reference ``<path>.md <section sign>N.M`` in tracked code, Bicep, YAML, shell and
  Markdown names a tracked Markdown file with a heading that starts with that number. A section sign
  without a file before it on its line refers to the nearest ``.md`` path earlier on the line; in a
  Markdown file, with none, to the file itself (inside a link's text: to the link's target); in any
  other file it is an error.
* Repository paths named in code comments, docstrings, Bicep, YAML and shell scripts exist.
* Nothing refers to the team's research notes outside the repository, except through ``docs/qualys-api.md``.
* ``docs/settings.md`` names every setting of :mod:`qualys.config.catalog`.

The checkers take a repository root and the list of its tracked files, so the tests at the end can
feed them a small synthetic repository and prove that each one reports what it should.
"""

from __future__ import annotations

import ast
import io
import posixpath
import re
import subprocess
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from qualys.config.catalog import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
#: Spelled with an escape so that this file's own examples are not read as references.
SECTION = "\u00a7"
#: Bicep resource type data copied from Azure/bicep-types-az: not ours to check.
EXCLUDED_PREFIXES = ("tests/azure_types/",)
#: Files the section references may appear in.
REFERENCE_SUFFIXES = (".py", ".bicep", ".md", ".yaml", ".yml", ".sh")
#: Research notes that live outside the repository; only docs/qualys-api.md may be cited.
OUTSIDE_NOTES = ("qualys-api", "azure-platform", "peer-connectors", "field-asks")
OUTSIDE_FOLDER = ".." + "/shared/"
#: Top-level folders whose paths, named in a comment, must exist.
REPO_FOLDERS = ("docs", "qualys", "qualys_simulator", "tests", "bench", "infra", "scripts")

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
_SECTION_REF = re.compile(SECTION + r"\s*(\d+(?:\.\d+)*)")
_MD_PATH = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)?[\w.-]+(?:/[\w.-]+)*\.md)\b")
_REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:" + "|".join(REPO_FOLDERS) + r")/[\w./-]*\.(?:py|md|bicep|json|sh|yaml|yml|toml|txt))\b"
)
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
_LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


@dataclass(frozen=True)
class Repo:
    """A repository root and its tracked files (posix paths relative to the root)."""

    root: Path
    files: frozenset[str]

    def text(self, path: str) -> str:
        return (self.root / path).read_text(encoding="utf-8", errors="replace")

    def has(self, path: str) -> bool:
        """A tracked file, or a folder holding one."""
        path = path.rstrip("/")
        return path in self.files or any(name.startswith(path + "/") for name in self.files) or path in ("", ".")

    def with_suffix(self, *suffixes: str) -> list[str]:
        return sorted(name for name in self.files if name.endswith(suffixes) and not name.startswith(EXCLUDED_PREFIXES))


def tracked_repo(root: Path = ROOT) -> Repo:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout.decode()
    files = {name for name in listed.split("\0") if name and "node_modules/" not in f"/{name}"}
    return Repo(root, frozenset(name for name in files if (root / name).is_file()))


# ------------------------------------------------------------------------------------------------
# Markdown: headings, anchors, links
# ------------------------------------------------------------------------------------------------


def _outside_fences(markdown: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line that is not inside a fenced code block."""
    fence: str | None = None
    for number, line in enumerate(markdown.splitlines(), start=1):
        match = _FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def headings(markdown: str) -> list[str]:
    """The text of every ATX heading outside code blocks, in order."""
    return [match.group(2) for _, line in _outside_fences(markdown) if (match := _HEADING.match(line))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower-case, punctuation dropped, spaces to hyphens."""
    text = _LINK.sub(lambda m: m.group(2), heading).replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor a Markdown file offers: heading slugs (repeats get -1, -2, ...) and HTML anchors."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in headings(markdown):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found.update(_HTML_ANCHOR.findall(markdown))
    return found


def links(markdown: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    found: list[tuple[int, str]] = []
    for number, line in _outside_fences(markdown):
        definition = _REF_DEFINITION.match(line)
        if definition:
            found.append((number, definition.group(1)))
            continue
        text = _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        found.extend((number, match.group(3)) for match in _LINK.finditer(text))
    return found


def _resolve(source: str, target_path: str) -> str:
    """A link target's repository path, relative to the Markdown file that holds it."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(source), unquote(target_path)))


def link_problems(repo: Repo, markdown_files: Iterable[str]) -> list[str]:
    problems: list[str] = []
    for source in markdown_files:
        text = repo.text(source)
        for number, target in links(text):
            where = f"{source}:{number}: {target}"
            if not target or _EXTERNAL.match(target):
                continue
            path, _, anchor = target.partition("#")
            resolved = _resolve(source, path) if path else source
            if resolved.startswith("../") or resolved == "..":
                problems.append(f"{where}: points outside the repository")
                continue
            if not repo.has(resolved):
                problems.append(f"{where}: no such file in the repository ({resolved})")
                continue
            if not anchor:
                continue
            if resolved.endswith(".md") and resolved in repo.files:
                if unquote(anchor) not in anchors(repo.text(resolved)):
                    problems.append(f"{where}: no heading with anchor #{anchor} in {resolved}")
            elif not _LINE_ANCHOR.match(anchor):
                problems.append(f"{where}: #{anchor} is not a line anchor of {resolved}")
    return problems


# ------------------------------------------------------------------------------------------------
# Section references
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SectionRef:
    source: str
    line: int
    #: Repository path of the Markdown file referred to; None when the reference names none.
    target: str | None
    number: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.target or '(no file)'} {SECTION}{self.number}"


def _named_md(repo: Repo, source: str, named: str) -> str:
    """A ``.md`` path as written: relative to the repository root, else to the file that names it."""
    named = named.strip("`'\"")
    if named in repo.files:
        return named
    return _resolve(source, named)


def section_refs(repo: Repo, source: str) -> list[SectionRef]:
    refs: list[SectionRef] = []
    is_markdown = source.endswith(".md")
    for number, line in enumerate(repo.text(source).splitlines(), start=1):
        if SECTION not in line:
            continue
        rest = line
        if is_markdown:
            # A section sign in a link's text refers to the link's target.
            def in_link(match: re.Match[str], number: int = number) -> str:
                label, target = match.group(2), match.group(3)
                if SECTION in label and not _EXTERNAL.match(target):
                    path = target.partition("#")[0]
                    resolved = _resolve(source, path) if path else source
                    refs.extend(SectionRef(source, number, resolved, n) for n in _SECTION_REF.findall(label))
                    return " " * len(match.group(0))
                return match.group(0)

            rest = _LINK.sub(in_link, line)
        for match in _SECTION_REF.finditer(rest):
            named = [m.group(1) for m in _MD_PATH.finditer(rest[: match.start()])]
            if named:
                target: str | None = _named_md(repo, source, named[-1])
            else:
                target = source if is_markdown else None
            refs.append(SectionRef(source, number, target, match.group(1)))
    return refs


def has_section(markdown: str, number: str) -> bool:
    """A heading whose text starts with ``number`` (``2.4 Paging``, ``5. Errors``), not a longer number."""
    pattern = re.compile(re.escape(number) + r"(?:\.?\s|\.?$)")
    return any(pattern.match(heading) for heading in headings(markdown))


def section_problems(repo: Repo, files: Iterable[str]) -> list[str]:
    problems: list[str] = []
    for source in files:
        for ref in section_refs(repo, source):
            if ref.target is None:
                problems.append(f"{ref}: names no Markdown file before the section sign")
            elif ref.target not in repo.files:
                problems.append(f"{ref}: no such file in the repository")
            elif not has_section(repo.text(ref.target), ref.number):
                problems.append(f"{ref}: no heading numbered {ref.number} in {ref.target}")
    return problems


# ------------------------------------------------------------------------------------------------
# Paths in comments, and references to notes outside the repository
# ------------------------------------------------------------------------------------------------


def commentary(path: str, text: str) -> list[tuple[int, str]]:
    """(line, text) of what a file says to its readers: Python comments and docstrings; all of a Bicep,
    YAML or shell file."""
    if not path.endswith(".py"):
        return list(enumerate(text.splitlines(), start=1))
    found: list[tuple[int, str]] = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.extend((first.lineno + offset, line) for offset, line in enumerate(first.value.value.splitlines()))
    return found


def path_problems(repo: Repo, files: Iterable[str]) -> list[str]:
    problems: list[str] = []
    for source in files:
        for number, line in commentary(source, repo.text(source)):
            for match in _REPO_PATH.finditer(line):
                if not repo.has(match.group(1)):
                    problems.append(f"{source}:{number}: {match.group(1)} is not in the repository")
    return problems


def outside_note_problems(repo: Repo, files: Iterable[str]) -> list[str]:
    allowed = "docs/qualys-api.md"
    notes = re.compile(r"[\w./-]*(?<![\w-])(?:" + "|".join(OUTSIDE_NOTES) + r")\.md\b")
    problems: list[str] = []
    for source in files:
        for number, line in enumerate(repo.text(source).splitlines(), start=1):
            if OUTSIDE_FOLDER in line:
                problems.append(f"{source}:{number}: refers to {OUTSIDE_FOLDER}")
            for match in notes.finditer(line):
                named = match.group(0)
                if named != allowed and _resolve(source, named) != allowed:
                    problems.append(f"{source}:{number}: refers to {named} (only {allowed} is in the repository)")
    return problems


def settings_table(markdown: str) -> set[str]:
    """Setting names in the first column of the settings table (the table whose header starts ``| Setting |``)."""
    start = markdown.find("| Setting |")
    if start == -1:
        return set()
    table = markdown[start:].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, re.MULTILINE))


def missing_settings(markdown: str, names: Iterable[str]) -> list[str]:
    table = settings_table(markdown)
    return [name for name in names if name not in table]


# ------------------------------------------------------------------------------------------------
# The repository
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo() -> Repo:
    return tracked_repo()


def test_relative_links_resolve(repo: Repo) -> None:
    markdown = repo.with_suffix(".md")
    assert "README.md" in markdown and "docs/qualys-api.md" in markdown
    assert link_problems(repo, markdown) == []


def test_section_references_resolve(repo: Repo) -> None:
    files = repo.with_suffix(*REFERENCE_SUFFIXES)
    refs = [ref for source in files for ref in section_refs(repo, source)]
    assert any(ref.source.startswith("qualys/") and ref.target == "docs/qualys-api.md" for ref in refs)
    assert section_problems(repo, files) == []


def test_paths_in_comments_exist(repo: Repo) -> None:
    files = repo.with_suffix(".py", ".bicep", ".yaml", ".yml", ".sh")
    assert path_problems(repo, files) == []
    for path in ("azure.yaml", "infra/main.bicep", "infra/app/key-vault.bicep"):
        assert "docs/deploy.md" in repo.text(path), path
    assert "## Tear down" in repo.text("docs/deploy.md")


def test_no_references_to_notes_outside_the_repository(repo: Repo) -> None:
    files = sorted(name for name in repo.files if not name.startswith(EXCLUDED_PREFIXES))
    assert outside_note_problems(repo, files) == []


def test_docs_name_every_setting(repo: Repo) -> None:
    assert missing_settings(repo.text("docs/settings.md"), [spec.name for spec in SETTINGS]) == []
    assert settings_table(repo.text("docs/settings.md")) <= {spec.name for spec in SETTINGS}
    pages = {
        "README.md": ("Read Asset", "Allow user view access to all objects", "./scripts/demo.sh", "./scripts/test.sh"),
        "docs/operations.md": ("x-functions-key", "func start", "functionTimeout", "Key Vault Secrets User",
                               "/api/qualys/validate", "/api/qualys/connect"),
    }
    for page, phrases in pages.items():
        text = repo.text(page)
        for phrase in phrases:
            assert phrase in text, f"{page}: {phrase}"


def test_readme_starts_with_the_two_commands(repo: Repo) -> None:
    commands = [line.split()[0] for line in repo.text("README.md").splitlines() if line.startswith("./scripts/")]
    assert commands[:2] == ["./scripts/demo.sh", "./scripts/test.sh"]


# ------------------------------------------------------------------------------------------------
# Each check can fail
# ------------------------------------------------------------------------------------------------


def synthetic_repo(tmp_path: Path, files: dict[str, str]) -> Repo:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return Repo(tmp_path, frozenset(files))


NOTES = "# Notes\n\n## 2. Assets\n\n### 2.4 Paging\n\n### 2.10 Ten\n\n## Open questions: `update` vs updated\n"


def test_slug_follows_github() -> None:
    assert slug("2.4 Paging") == "24-paging"
    assert slug("Option A: `azd up`") == "option-a-azd-up"
    assert slug("5.2 HTTP status and SIMPLE_RETURN codes") == "52-http-status-and-simple_return-codes"
    assert slug("Qualys → Azure connector") == "qualys--azure-connector"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[ok](docs/notes.md) [ok](docs/notes.md#24-paging) [web](https://example.com/x.md) [top](#readme)\n", None),
        ("[gone](docs/missing.md)\n", "no such file"),
        ("[anchor](docs/notes.md#25-paging)\n", "no heading with anchor #25-paging"),
        ("[self](#nowhere)\n", "no heading with anchor #nowhere"),
        ("see [up](../outside.md)\n", "outside the repository"),
        ("[ref]: docs/missing.md\n", "no such file"),
        ("![img](img/missing.png)\n", "no such file"),
        ("```\n[in code](docs/missing.md)\n```\n`[code](docs/missing.md)`\n", None),
    ],
)
def test_link_checker_reports(tmp_path: Path, markdown: str, expected: str | None) -> None:
    repo = synthetic_repo(tmp_path, {"README.md": "# Readme\n\n" + markdown, "docs/notes.md": NOTES})
    problems = link_problems(repo, ["README.md"])
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0] and "README.md:3" in problems[0], problems


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("code.py", f"# paging (docs/notes.md {SECTION}2.4, {SECTION}2)\n", None),
        ("code.py", f'"""Ten (docs/notes.md {SECTION}2.10)."""\n', None),
        ("code.py", f"# docs/notes.md {SECTION}2.5\n", "no heading numbered 2.5"),
        ("code.py", f"# docs/notes.md {SECTION}2.1\n", "no heading numbered 2.1"),
        ("code.py", f"# docs/notes.md {SECTION}2.2, {SECTION}2.4\n", "no heading numbered 2.2"),
        ("code.py", f"# notes.md {SECTION}2.4\n", "no such file"),
        ("infra/main.bicep", f"// docs/gone.md {SECTION}1\n", "no such file"),
        ("code.py", f"# the paging rules ({SECTION}2.4)\n", "names no Markdown file"),
        ("docs/other.md", f"# Other\n\nAs in [the notes {SECTION}2.4](notes.md#24-paging), [{SECTION}2](notes.md).\n", None),
        ("docs/other.md", f"# Other\n\n## 1. One\n\nSee {SECTION}1 and {SECTION}3.\n", "no heading numbered 3 in docs/other.md"),
        ("docs/other.md", f"# Other\n\nSee docs/notes.md {SECTION}2.4 and {SECTION}1.\n", "numbered 1 in docs/notes.md"),
        ("docs/other.md", f"# Other\n\nSee [notes {SECTION}2.9](notes.md).\n", "no heading numbered 2.9"),
    ],
)
def test_section_checker_reports(tmp_path: Path, source: str, text: str, expected: str | None) -> None:
    repo = synthetic_repo(tmp_path, {source: text, "docs/notes.md": NOTES})
    problems = section_problems(repo, [source])
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("code.py", "# See docs/notes.md and qualys/code.py.\n", None),
        ("code.py", "# See docs/deploy.md.\n", "docs/deploy.md"),
        ("code.py", '"""Module.\n\nDetails in docs/deploy.md.\n"""\n', "docs/deploy.md"),
        ("code.py", 'def f() -> None:\n    """Reads qualys/settings_catalog.py."""\n', "qualys/settings_catalog.py"),
        ("code.py", 'PATHS = ["docs/notes-in-a-string.md"]  # a value, not a reference\n', None),
        ("infra/main.bicep", "// See docs/deploy.md.\n", "docs/deploy.md"),
        ("azure.yaml", "# See docs/deploy.md.\n", "docs/deploy.md"),
        ("code.py", "# https://learn.microsoft.com/docs/x.md and Packs/qualys/x.py are elsewhere\n", None),
    ],
)
def test_path_checker_reports(tmp_path: Path, source: str, text: str, expected: str | None) -> None:
    repo = synthetic_repo(tmp_path, {source: text, "docs/notes.md": NOTES, "qualys/code.py": ""})
    problems = path_problems(repo, [source])
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(
    ("source", "text", "bad"),
    [
        ("README.md", "See [API](docs/qualys-api.md) and `docs/qualys-api.md`.\n", False),
        ("docs/deploy.md", f"See [API]({OUTSIDE_NOTES[0]}.md#1-x).\n", False),
        ("code.py", "# the vault secret qualys-api-url\n", False),
        ("code.py", f"# see {OUTSIDE_NOTES[0]}.md\n", True),
        ("code.py", f"# see {OUTSIDE_NOTES[1]}.md {SECTION}6.4\n", True),
        ("README.md", f"[notes]({OUTSIDE_FOLDER}{OUTSIDE_NOTES[2]}.md)\n", True),
        ("tests/helpers.py", f"# {OUTSIDE_NOTES[3]}.md\n", True),
        ("docs/other.md", f"[up](../{OUTSIDE_NOTES[0]}.md)\n", True),
    ],
)
def test_outside_note_checker_reports(tmp_path: Path, source: str, text: str, bad: bool) -> None:
    repo = synthetic_repo(tmp_path, {source: text})
    assert bool(outside_note_problems(repo, [source])) is bad


def test_settings_check_reports_a_missing_setting() -> None:
    table = "| Setting | Default |\n|---|---|\n| `QUALYS_API_URL` | — |\n| `OUTPUT_DIR` | — |\n"
    assert missing_settings(table, ["QUALYS_API_URL", "OUTPUT_DIR"]) == []
    assert missing_settings(table + "Also `KEY_VAULT_URL` in prose.\n", ["QUALYS_API_URL", "KEY_VAULT_URL"]) == ["KEY_VAULT_URL"]
