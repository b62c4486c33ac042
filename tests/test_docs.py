"""Documentation references stay inside the repository and point at things that exist.

- No file cites the science notes that live outside the repository (their names are built
  below so that this file does not cite them itself).
- Every "docs/theory.md section N" (also "sections N and M", "sections N-M") names a numbered
  heading of docs/theory.md.
- Every ``docs/<name>.md`` mentioned in the package exists.
- Every ``test_<file>.py::<test>`` named in docs/theory.md is a test function of that file.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THEORY = ROOT / "docs" / "theory.md"
OUTSIDE = [n + ".md" for n in ("THEORY", "DESIGN")] + ["PAPER_" + "EXPERIMENTS"]
SCANNED = ["sde_bias", "tests", "benchmarks", "scenarios", "solvers", "docs", "README.md"]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".toml"}

NUM = r"\d+(?:\.\d+)*"
CITATION = re.compile(
    rf"docs/theory\.md(?:'s)?,?\s+sections?\s+({NUM}(?:\s*(?:,|and|-|–)\s*{NUM})*)"
)
HEADING = re.compile(rf"^#{{2,6}}\s+({NUM})\.?\s", re.MULTILINE)


def _files():
    for entry in SCANNED:
        path = ROOT / entry
        paths = [path] if path.is_file() else sorted(path.rglob("*"))
        for p in paths:
            if p.is_file() and p.suffix in TEXT_SUFFIXES:
                yield p


def _normalised(text: str) -> str:
    """Join comment continuation lines and collapse whitespace, so a citation wrapped over
    two lines of a docstring or a ``#`` comment reads as one."""
    text = re.sub(r"\n[ \t]*#+[ \t]*", " ", text)
    return re.sub(r"\s+", " ", text)


def _theory_sections() -> set[str]:
    return set(HEADING.findall(THEORY.read_text(encoding="utf-8")))


def test_theory_has_the_numbered_sections():
    sections = _theory_sections()
    assert {str(n) for n in range(1, 8)} <= sections, sorted(sections)
    assert "2.3" in sections and "7.1" in sections


def test_no_reference_to_files_outside_the_repository():
    hits = []
    for p in _files():
        text = p.read_text(encoding="utf-8", errors="replace")
        for name in OUTSIDE:
            if name in text:
                hits.append(f"{p.relative_to(ROOT)}: {name}")
    assert not hits, "cite docs/theory.md, docs/architecture.md or docs/paper_experiments.md instead:\n" + "\n".join(hits)


def test_every_theory_citation_names_an_existing_section():
    sections = _theory_sections()
    bad, count = [], 0
    for p in _files():
        for m in CITATION.finditer(_normalised(p.read_text(encoding="utf-8", errors="replace"))):
            for number in re.findall(NUM, m.group(1)):
                count += 1
                if number not in sections:
                    bad.append(f"{p.relative_to(ROOT)}: '{m.group(0)}' (no section {number})")
    assert count > 30, count  # the package does cite it; a broken pattern would find nothing
    assert not bad, "\n".join(bad)


def test_docs_named_in_the_package_exist():
    missing = []
    for p in (ROOT / "sde_bias").rglob("*.py"):
        for name in re.findall(r"docs/[\w.-]+\.md", p.read_text(encoding="utf-8")):
            if not (ROOT / name).is_file():
                missing.append(f"{p.relative_to(ROOT)}: {name}")
    assert not missing, "\n".join(missing)


def test_tests_named_in_theory_exist():
    text = THEORY.read_text(encoding="utf-8")
    named = set(re.findall(r"(test_\w+\.py)::(test_\w+)", text))
    assert len(named) > 40, len(named)
    missing = []
    for file, func in sorted(named):
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if func not in defined:
            missing.append(f"{file}::{func}")
    assert not missing, "docs/theory.md names tests that do not exist:\n" + "\n".join(missing)
