"""No connector repeats a state list: every condition on a status or state is built from the one
state table's registry (`fma.domain.states.allowed`), so an adapter never compares a status
with a literal state nor lists states itself. Naming a state to *write* it stays allowed."""

from __future__ import annotations

import ast
from pathlib import Path

ADAPTERS = Path(__file__).resolve().parents[2] / "shared" / "fma" / "adapters"
STATE_ENUMS = {"ExperimentStatus", "RoundState", "UpdateStatus"}


def _is_state(node: ast.AST) -> bool:
    """`RoundState.OPEN` or `str(RoundState.OPEN)` (or a collection of them)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str" and node.args:
        node = node.args[0]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(map(_is_state, node.elts))
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in STATE_ENUMS


def _home_made(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare):
        return any(map(_is_state, [node.left, *node.comparators]))
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return sum(map(_is_state, node.elts)) >= 2
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "is_in"
            and any(map(_is_state, node.args)))


def literal_state_conditions(source: str) -> list[int]:
    """Lines that compare with a literal state, list states, or pass states to `is_in`."""
    return sorted({node.lineno for node in ast.walk(ast.parse(source)) if _home_made(node)})


def test_no_adapter_builds_a_state_condition_of_its_own():
    found = {str(p.relative_to(ADAPTERS)): literal_state_conditions(p.read_text()) for p in ADAPTERS.rglob("*.py")}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_the_scan_sees_each_kind_of_home_made_condition():
    assert literal_state_conditions("x = row['state'] == RoundState.OPEN") == [1]
    assert literal_state_conditions("c = Item.status == str(UpdateStatus.UPLOADING)") == [1]
    assert literal_state_conditions("A = (str(RoundState.OPEN), str(RoundState.SEALED))") == [1]
    assert literal_state_conditions("c = Item.state.is_in(str(RoundState.OPEN))") == [1]
    assert literal_state_conditions("a = [Item.status.set(str(UpdateStatus.FAILED))]") == []
    assert literal_state_conditions("c = state_in(Item.state, 'seal_round')") == []
    assert literal_state_conditions("ok = move(state=RoundState.FAILED) is not None") == []
    assert literal_state_conditions("ok = row['status'] in {UpdateStatus.UPLOADING}") == [1]
