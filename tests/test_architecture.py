"""The shape the design promises: the core never imports the adapters, adapters only translate,
no module is over 400 lines, and bench/ uses the tests' fakes only through their public names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Adapters hold no prompts, SQL, retrieval or model calls: those belong to the core.
FORBIDDEN_IN_ADAPTERS = {
    *("openai", "llama_index", "aiosqlite", "sqlite3", "bm25s", "onnxruntime", "tokenizers"),
    "bot.knowledge",
}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def modules(folder: str) -> list[Path]:
    """Every module of a top-level package, in its subpackages too."""
    found = sorted((ROOT / folder).rglob("*.py"))
    assert len(found) > 5, f"{folder}/ looks empty: the rules below would check nothing"
    return found


def test_the_core_never_imports_the_adapters() -> None:
    for path in modules("bot"):
        for module, top in imports(path):
            if module.split(".")[0] != "adapters":
                continue
            # `bot run` is the composition root: it may load the launcher when it runs.
            assert path.relative_to(ROOT).as_posix() == "bot/cli.py"
            assert not top, f"{path.name} imports {module} at module level"


def test_adapters_hold_no_model_sql_or_retrieval_code() -> None:
    for path in modules("adapters"):
        for module, _ in imports(path):
            parts = module.split(".")
            assert parts[0] not in FORBIDDEN_IN_ADAPTERS, f"{path.name}: {module}"
            assert ".".join(parts[:2]) not in FORBIDDEN_IN_ADAPTERS, f"{path.name}: {module}"


def test_every_module_says_what_it_owns() -> None:
    for folder in ("bot", "adapters"):
        for path in modules(folder):
            docstring = ast.get_docstring(ast.parse(path.read_text()))
            assert docstring, f"{folder}/{path.name} has no module docstring"


# A module past this many lines holds more than one concern (the house style says split at 600;
# the layout issue set 400 for the bot's own code, then for every package and the tests' fakes).
MAX_MODULE_LINES = 400
# Every top-level package but the tests (bot/, adapters/, bench/ and any added later), and the
# tests' loopback fakes, which bench/ runs too.
SIZED = [
    *sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"),
    "tests/fakes",
]


def test_no_module_is_over_the_size_limit() -> None:
    assert {"bot", "adapters", "bench"} <= set(SIZED)
    for folder in SIZED:
        for path in modules(folder):
            lines = len(path.read_text().splitlines())
            assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines"


def names_from_the_fakes(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from tests.fakes... import name` in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.fakes")
        for alias in node.names
    ]


def test_bench_uses_only_the_fakes_public_names() -> None:
    # The fakes offer hooks (constructor options, on_* methods) for what the benchmark needs;
    # their private names may change with any test's needs.
    for path in modules("bench"):
        for module, name in names_from_the_fakes(path):
            private = [part for part in [*module.split("."), name] if part.startswith("_")]
            assert not private, f"{path.relative_to(ROOT)} imports {name} from {module}"


def test_bench_overrides_no_private_method_of_a_fake() -> None:
    for path in modules("bench"):
        imported = {
            name: getattr(importlib.import_module(module), name)
            for module, name in names_from_the_fakes(path)
        }
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            fakes = [
                imported[base.id]
                for base in node.bases
                if isinstance(base, ast.Name) and isinstance(imported.get(base.id), type)
            ]
            for item in node.body:
                if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                name = item.name
                if not name.startswith("_") or name.startswith("__"):
                    continue
                for fake in fakes:
                    assert not hasattr(fake, name), (
                        f"{path.relative_to(ROOT)}: {node.name}.{name} overrides {fake.__name__}'s"
                    )
