"""The package's structure holds: the library never imports the commands above it or the seed's
top-level names, its modules import each other without cycles, and the seed's names are the
package's very modules."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mislabel"
ABOVE_THE_LIBRARY = ("mislabel.commands", "mislabel.__main__", "mislabel.pipeline", "mislabel.issue_finder",
                     "mislabel.api")
SEED_NAMES = ("runner", "train_detector", "util", "losses", "models", "detector_model", "data_debug_dm")


def module_name(path: Path) -> str:
    parts = ["mislabel", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (``from pkg import sub``
    counts as ``pkg.sub`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
    return found


def test_the_library_imports_no_command_and_no_seed_name() -> None:
    for name, path in MODULES.items():
        if name == "mislabel" or name.startswith(ABOVE_THE_LIBRARY):  # the package's __init__ is the API's surface
            continue
        wrong = sorted(m for m in imports(path)
                       if m.startswith(ABOVE_THE_LIBRARY) or m.split(".")[0] in SEED_NAMES)
        assert not wrong, f"{name} imports {wrong}"


def test_no_import_cycles() -> None:
    graph = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dependency in sorted(graph[name]):
            if state.get(dependency) == 1:
                cycle = path[path.index(dependency):] + [dependency]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dependency not in state:
                visit(dependency, path + [dependency])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_seed_names_are_the_package_modules() -> None:
    import detector_model.lstm
    import losses
    import models.resnet
    import util

    import mislabel.core.dynamics
    import mislabel.models.losses
    import mislabel.models.resnet
    import mislabel.scoring.lstm

    assert detector_model.lstm is mislabel.scoring.lstm and models.resnet is mislabel.models.resnet
    assert losses is mislabel.models.losses and util.load_dynamics is mislabel.core.dynamics.load_dynamics


def test_tests_and_bench_do_not_import_each_other_and_no_test_imports_a_test() -> None:
    """bench/ consumes the library; tests share only conftest's fixtures and helpers."""
    root = PACKAGE.parent
    test_modules = {path.stem for path in (root / "tests").glob("test_*.py")}
    bench_modules = {path.stem for path in (root / "bench").glob("*.py")}
    for path in (root / "tests").glob("*.py"):
        wrong = sorted(m for m in imports(path) if m.split(".")[0] in {"bench", "tests"} | test_modules | bench_modules)
        assert not wrong, f"tests/{path.name} imports {wrong}"
    for path in (root / "bench").glob("*.py"):
        wrong = sorted(m for m in imports(path) if m.split(".")[0] in ("tests", "conftest") or m in test_modules)
        assert not wrong, f"bench/{path.name} imports {wrong}"


OPTIONAL_FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "datasets", "accelerate")


def test_optional_frameworks_stay_in_the_integrations() -> None:
    """Only mislabel.integrations.<framework> imports an optional extra, so `import mislabel` and the
    commands run on the core install."""
    for name, path in MODULES.items():
        found = sorted(m for m in imports(path) if m.split(".")[0] in OPTIONAL_FRAMEWORKS)
        allowed = name.startswith("mislabel.integrations.") and name != "mislabel.integrations.indexed"
        assert not found or allowed, f"{name} imports {found}"
