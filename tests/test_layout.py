"""The import rules of DESIGN.md section 2, checked on the source: each folder has one job and arrows go one way.

engines (tune/engine) import no Ray, Optuna or MLflow; `models` and `datasets` import nothing of the project
but each other; `evaluation` imports only those two; `results` never imports `tune` (tune -> results only).
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
