"""The house's layout is kept by checks, not by memory: the layering contracts cover a new module by its folder
(globs, not lists of names), no module in app/ grows past 800 lines, and the app root stays small."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
MAX_LINES = 800
ROOT_MODULES = {"__init__", "__main__", "cli", "config", "db", "deps", "errors", "logs", "main", "migrate", "models"}


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """import-linter run on a copy of the app (so a probe never lands in the real tree)."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(exe), "--no-cache", "--config", str(tree / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_new_module_is_covered_by_the_contracts_of_its_folder(tmp_path: Path) -> None:
    shutil.copytree(APP, tmp_path / "app", ignore=shutil.ignore_patterns("static", "templates", "locale", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    kept = _lint_imports(tmp_path)
    assert kept.returncode == 0, kept.stdout[-3000:]  # the copy itself keeps every contract
    # A use-case added to a service folder that speaks HTTP and writes the ledger's tables itself; a page added to a
    # pages folder that runs SQL; a service module added to a domain that has only service.py.
    (tmp_path / "app/store/service/probe_new.py").write_text("import fastapi\nfrom app.ledger import models\n")
    (tmp_path / "app/notices/pages/probe_new.py").write_text("import sqlalchemy\n")
    (tmp_path / "app/rules/probe_new.py").write_text("from app import errors\n")
    broken = _lint_imports(tmp_path)
    out = broken.stdout
    assert broken.returncode != 0
    assert "app.store.service.probe_new is not allowed to import fastapi" in out
    assert "app.store.service.probe_new is not allowed to import app.ledger.models" in out
    assert "app.notices.pages.probe_new is not allowed to import sqlalchemy" in out
    assert "app.rules is not allowed to import app.errors" in out and "app.rules.probe_new -> app.errors" in out


def test_no_module_in_app_is_over_800_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in APP.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these along their sections (the old module re-exports): {long}"


def test_the_app_root_holds_only_what_every_domain_shares() -> None:
    modules = {p.stem for p in APP.glob("*.py")}
    assert modules == ROOT_MODULES, "a domain's code goes in its folder; web plumbing in app/web, demo data in app/demo"


def test_app_models_alone_registers_every_table() -> None:
    """Alembic and the schema tests see the tables through `app.models` only: a table defined in a domain's models
    module but missing there would silently leave the migrations' comparison."""
    defined = sorted({line.split("class ")[1].split("(")[0] for p in APP.rglob("models.py")
                      for line in p.read_text(encoding="utf-8").splitlines()
                      if line.startswith("class ") and "table=True" in line})
    probe = ("import app.models, sqlmodel; print(sorted(m.class_.__name__ for m in "
             "sqlmodel.SQLModel._sa_registry.mappers))")
    seen = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    assert seen.stdout.strip() == str(defined)
