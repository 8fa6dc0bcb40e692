"""What a deployment ships: the package ``func azure functionapp publish`` / ``azd deploy`` builds.

Both tools zip the project folder minus what ``.funcignore`` excludes (gitignore syntax). The test
builds that list from the repository's files with the same rules, asserts it holds the connector
and nothing else (no simulator, tests, bench, infra, docs, scripts), and imports every shipped
module from a copy of the package alone: nothing shipped needs what is left out.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = ("qualys_simulator/", "tests/", "bench/", "infra/", "docs/", "scripts/", ".ci/", "node_modules/", ".venv/")


def _regex(pattern: str) -> re.Pattern[str]:
    """A gitignore pattern as a regex over a relative path (``*`` stays within one folder, ``**`` crosses them)."""
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    body = pattern.strip("/")
    out = ""
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif body.startswith("**", i):
            out += ".*"
            i += 2
        elif body[i] == "*":
            out += "[^/]*"
            i += 1
        elif body[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(body[i])
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    # A match on a folder excludes everything below it; a pattern ending in "/" matches folders only.
    suffix = "/.*" if pattern.endswith("/") else "(?:/.*)?"
    return re.compile(f"^{prefix}{out}{suffix}$")


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per rule of a .funcignore text."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _regex(line[1:] if negated else line)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    ignored = False
    for negated, regex in rules:  # the last matching rule decides, as in git
        if regex.match(path):
            ignored = not negated
    return ignored


@cache
def package() -> tuple[str, ...]:
    """The files a deployment ships, from the repository's own files (tracked and untracked, not ignored by git)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    rules = ignore_rules((ROOT / ".funcignore").read_text())
    return tuple(sorted(path for path in listed if (ROOT / path).is_file() and not is_ignored(path, rules)))


def test_the_package_is_the_app_and_the_connector_only() -> None:
    files = package()
    app = {"function_app.py", "host.json", "requirements.txt"}
    assert app <= set(files)
    assert all(path.startswith("qualys/") or path in app for path in files), files
    connector = {str(p.relative_to(ROOT)) for p in (ROOT / "qualys").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert connector <= set(files)  # every module and schema of the connector ships
    assert not [path for path in files if path.startswith(LEFT_OUT)]


@pytest.mark.parametrize(
    ("pattern", "path", "ignored"),
    [
        ("tests/", "tests/test_x.py", True), ("tests/", "qualys/tests.py", False), ("*.md", "docs/a/b.md", True),
        ("*.pyc", "qualys/__pycache__/x.pyc", True), ("/infra", "infra/main.bicep", True), ("/infra", "x/infra/y", False),
        ("docs/*.md", "docs/a.md", True), ("docs/*.md", "docs/a/b.md", False), ("**/cache", "a/b/cache/x", True),
    ],
)
def test_the_ignore_rules_follow_gitignore(pattern: str, path: str, ignored: bool) -> None:
    assert is_ignored(path, ignore_rules(pattern)) is ignored
    assert is_ignored(path, ignore_rules(f"{pattern}\n!{path}")) is False  # a later negation wins


def test_nothing_shipped_imports_what_is_left_out_at_import_time() -> None:
    """Only the demo imports the simulator, inside its function (a checkout-only command)."""
    top_level_left_out = {name.rstrip("/") for name in LEFT_OUT}
    for path in (p for p in package() if p.endswith(".py")):
        tree = ast.parse((ROOT / path).read_text(), path)
        for node in tree.body:  # module level only: imports inside functions run when called
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & top_level_left_out, (path, names)


def test_every_shipped_module_imports_from_the_package_alone(tmp_path: Path) -> None:
    for path in package():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, target)
    modules = [  # every module but ``python -m qualys``'s entry point, which runs the CLI when imported
        path[:-3].replace("/", ".").removesuffix(".__init__")
        for path in package()
        if path.endswith(".py") and not path.endswith("__main__.py")
    ]
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint(len(sys.argv) - 1)"
    done = subprocess.run(
        [sys.executable, "-E", "-s", "-c", script, *modules], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(modules) > 40
    # The demo needs the simulator, which is not shipped: it says so in one line and exits 2.
    demo = subprocess.run(
        [sys.executable, "-E", "-s", "-m", "qualys", "demo", "--output-dir", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert demo.returncode == 2 and "only a checkout of the repository has" in demo.stderr, demo.stderr
