"""The package layout holds: stages import only downward and no sibling modules import each other.

The contracts live in pyproject.toml ([tool.importlinter]) and run in `make lint`; here they run on the real
package and on a copy with a planted upward import and a planted cycle, which they must refuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "influcoder", src / "influcoder", ignore=shutil.ignore_patterns("__pycache__"))
    return src


def test_the_package_keeps_its_contracts(tmp_path):
    result = lint_imports(ROOT / "src", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_planted_upward_import_is_refused(tmp_path):
    src = copy_package(tmp_path)
    errors = src / "influcoder" / "core" / "errors.py"
    errors.write_text(
        errors.read_text() + "\n\ndef _planted():\n    from influcoder.labels.settings import LabelSettings\n"
    )
    result = lint_imports(src, tmp_path)
    assert result.returncode == 1
    assert "stages import only downward BROKEN" in result.stdout
    assert "influcoder.core.errors -> influcoder.labels.settings" in result.stdout


def test_a_planted_cycle_between_siblings_is_refused(tmp_path):
    src = copy_package(tmp_path)
    records = src / "influcoder" / "data" / "records.py"  # formats imports records; now records imports formats
    records.write_text(records.read_text() + "\n\ndef _planted():\n    from influcoder.data.formats import load_file\n")
    result = lint_imports(src, tmp_path)
    assert result.returncode == 1
    assert "no import cycles between sibling modules BROKEN" in result.stdout
    assert "in influcoder.data" in result.stdout and ".records -> .formats" in result.stdout


def test_moving_modules_keeps_the_artifact_formats():
    """Artifacts on disk name their format; a module move must not rename it, or every saved index, store and
    encoder would be refused (the layout move once rewrote the index's format string with the module path)."""
    from influcoder.attribution import index
    from influcoder.core import store
    from influcoder.encoder import model

    assert (index.FORMAT, store.FORMAT, model.FORMAT) == (
        "influcoder.index",
        "influcoder.feature-store",
        "influcoder.encoder",
    )
