"""The import rules of DESIGN.md section 2, checked on the source: each folder has one job and arrows go one way.

engines (tune/engine) import no Ray, Optuna or MLflow; `models` and `datasets` import nothing of the project
but each other; `evaluation` imports only those two; `results` never imports `tune` (tune -> results only);
no library module imports an entry point (a script with a `__main__` guard, or a module only they share).
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"ray", "optuna", "mlflow"}
PROJECT = {"datasets", "models", "evaluation", "tune", "results"}
# (folder, forbidden top-level packages, forbidden dotted prefixes)
RULES = [
    ("tune/engine", FRAMEWORKS, ("tune.study", "tune.run_ablation", "tune.train_one", "tune.generate_one", "tune.spaces")),
    ("models", PROJECT - {"models", "datasets"} | FRAMEWORKS, ()),
    ("datasets", PROJECT - {"models", "datasets"} | FRAMEWORKS, ()),
    ("evaluation", PROJECT - {"evaluation", "models", "datasets"} | FRAMEWORKS, ()),
    ("results", {"tune"}, ()),
]


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, at any depth (function-level imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def violations(folder: str, forbidden: set[str], prefixes: tuple[str, ...], root: Path = REPO) -> list[str]:
    found = []
    for path in sorted((root / folder).rglob("*.py")):
        for module in imported_modules(path.read_text()):
            if module.split(".")[0] in forbidden or module.startswith(prefixes):
                found.append(f"{path.relative_to(root)} imports {module}")
    return found


# the modules that only entry points share: the CLI runner and the single-run CLIs' output files
ENTRY_HELPERS = {"results.cli", "tune.cli"}


def entry_points(root: Path = REPO) -> set[str]:
    """Dotted names of the project's entry points: every module with a `__main__` guard, and ENTRY_HELPERS."""
    found = set(ENTRY_HELPERS)
    for top in PROJECT:
        for path in (root / top).rglob("*.py"):
            if '__name__ == "__main__"' in path.read_text():
                found.add(".".join(path.relative_to(root).with_suffix("").parts))
    return found


def entry_point_imports(root: Path = REPO) -> list[str]:
    """Library modules (not entry points themselves) that import an entry point."""
    entries = entry_points(root)
    found = []
    for top in sorted(PROJECT):
        for path in sorted((root / top).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            if name in entries:
                continue
            for module in imported_modules(path.read_text()):
                if module in entries or any(module.startswith(e + ".") for e in entries):
                    found.append(f"{path.relative_to(root)} imports the entry point {module}")
    return found


def test_no_library_module_imports_an_entry_point():
    assert {"tune.run_ablation", "tune.train_one", "tune.generate_one", "results.report"} <= entry_points()
    assert entry_point_imports() == []


def test_the_check_sees_an_entry_point_import(tmp_path):
    """A library module importing a script (found by its `__main__` guard) or a shared CLI helper fails."""
    (tmp_path / "tune" / "study").mkdir(parents=True)
    (tmp_path / "tune" / "train_one.py").write_text('if __name__ == "__main__":\n    pass\n')
    (tmp_path / "tune" / "study" / "plan.py").write_text("from tune.cli import parse_overrides\n")
    (tmp_path / "tune" / "study" / "run.py").write_text("def f():\n    import tune.train_one\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "report.py").write_text('from results.cli import run_cli\nif __name__ == "__main__":\n    run_cli(print)\n')
    assert entry_point_imports(tmp_path) == ["tune/study/plan.py imports the entry point tune.cli",
                                             "tune/study/run.py imports the entry point tune.train_one"]


@pytest.mark.parametrize("folder, forbidden, prefixes", RULES, ids=[r[0] for r in RULES])
def test_import_rules(folder, forbidden, prefixes):
    assert violations(folder, forbidden, prefixes) == []


def test_the_check_sees_a_forbidden_import(tmp_path):
    """The rule fires on a top-level and on a function-level import (so the test above can fail)."""
    (tmp_path / "tune" / "engine").mkdir(parents=True)
    (tmp_path / "tune" / "engine" / "bad.py").write_text("import torch\n\ndef f():\n    from ray import tune\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bad.py").write_text("from tune.study.tracking import TrialRun\n")
    assert violations("tune/engine", FRAMEWORKS, (), tmp_path) == ["tune/engine/bad.py imports ray"]
    assert violations("results", {"tune"}, (), tmp_path) == ["results/bad.py imports tune.study.tracking"]
