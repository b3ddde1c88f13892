"""cluster/stack.py: data written under an older journal layout is wiped, never misread."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("stack_under_test", ROOT / "cluster" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)     # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STATE", tmp_path)
    return module


class FakePart:
    def __init__(self, name: str, state: Path, running: bool = False, data: bool = True):
        self.name, self.dir, self._running = name, state / name, running
        if data:
            (self.dir / "data").mkdir(parents=True)
            (self.dir / "data" / "segment").write_text("old")

    def running(self) -> bool:
        return self._running


def test_data_of_the_old_layout_is_wiped_and_the_marker_written(stack, tmp_path):
    parts = [FakePart("kafka", tmp_path), FakePart("postgres", tmp_path), FakePart("dynamodb", tmp_path)]
    stack.check_layout(parts)
    assert not (tmp_path / "kafka" / "data").exists() and not (tmp_path / "postgres" / "data").exists()
    assert (tmp_path / "dynamodb" / "data").exists(), "only the parts whose data derives from the logs"
    assert (tmp_path / "data-layout").read_text().strip() == stack.DATA_LAYOUT


def test_data_of_the_current_layout_is_kept(stack, tmp_path):
    (tmp_path / "data-layout").write_text(stack.DATA_LAYOUT + "\n")
    parts = [FakePart("kafka", tmp_path), FakePart("postgres", tmp_path)]
    stack.check_layout(parts)
    assert (tmp_path / "kafka" / "data" / "segment").exists()


@pytest.mark.parametrize("running", ["kafka", "ray"])
def test_a_running_part_over_old_data_is_refused_and_nothing_wiped(stack, tmp_path, running):
    parts = [FakePart("kafka", tmp_path, running=running == "kafka"), FakePart("postgres", tmp_path),
             FakePart("ray", tmp_path, running=running == "ray", data=False)]
    with pytest.raises(stack.StackError, match="cluster/stack.py down"):
        stack.check_layout(parts)
    assert (tmp_path / "kafka" / "data" / "segment").exists() and not (tmp_path / "data-layout").exists()
