"""results/contract.py owns every MLflow metric key and tag name: the source spells none of them elsewhere.

The check reads string literals (not docstrings or comments): in the library packages any `prefix/name`
metric key of a known prefix, in the library and the benchmarks any value of the contract's keys, and any
dotted tag name (`ray.trial_id`, `ssl_vqvae.role`, `mlflow.parentRunId`) inside a longer string too.
"""
import ast
import re
from pathlib import Path

import results.contract as contract

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("datasets", "models", "evaluation", "tune", "results")
KEY_SHAPE = re.compile(r"(raw|gen|val|test|train|codebook|time|holdout|prior|fcn|best_ssl|baseline)/[a-z0-9_]+")


def contract_names() -> tuple[set[str], set[str]]:
    """(metric keys, dotted tag names) of results.contract."""
    values = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)}
    keys = {v for v in values if KEY_SHAPE.fullmatch(v)}
    tags = {v for k, v in vars(contract).items() if k.endswith("_TAG") and isinstance(v, str) and "." in v}
    return keys, tags


def literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal but docstrings; f-strings give their literal parts."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def spelled_keys(path: Path, library: bool, root: Path = REPO) -> list[str]:
    keys, tags = contract_names()
    found = []
    for line, text in literals(path.read_text()):
        if (library and KEY_SHAPE.fullmatch(text)) or text in keys or any(t in text for t in tags):
            found.append(f"{path.relative_to(root)}:{line} spells {text!r}")
    return sorted(found)


def test_no_mlflow_key_is_spelled_outside_the_contract():
    found = []
    for top in (*LIBRARY, "benchmarks"):
        for path in sorted((REPO / top).rglob("*.py")):
            if path != REPO / "results" / "contract.py":
                found += spelled_keys(path, library=top in LIBRARY)
    assert found == []


def test_the_check_sees_a_spelled_key(tmp_path):
    """A key as a literal, inside an f-string's text, or a tag inside a filter string fails; docstrings pass."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""Logs `val/svm_acc` and ray.trial_id."""\n'
                   'KEYS = ["test/svm_acc", "holdout/new_key"]\n'
                   'def f(m, t):\n    return m["gen/fid"], f"tags.`ray.trial_id` = \'{t}\'"\n')
    tag_filter = "bad.py:4 spells " + repr("tags.`ray.trial_id` = '")
    assert spelled_keys(bad, library=True, root=tmp_path) == sorted([
        "bad.py:2 spells 'holdout/new_key'", "bad.py:2 spells 'test/svm_acc'", "bad.py:4 spells 'gen/fid'", tag_filter])
    # a benchmark's own output key of a known prefix is allowed; the contract's keys are not
    assert spelled_keys(bad, library=False, root=tmp_path) == sorted([
        "bad.py:2 spells 'test/svm_acc'", "bad.py:4 spells 'gen/fid'", tag_filter])


def test_summary_keys():
    assert contract.summary_key(contract.BEST_SSL_PREFIX, contract.TEST_SVM) == "best_ssl/test_svm_acc"
    assert contract.column(contract.GEN_FID) == "gen_fid"
