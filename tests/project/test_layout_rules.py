"""The package's layout rules (DESIGN "The flow"): stage packages, imports that flow one way,
no import cycles (imports inside functions count), no private name imported from another
module, no module of more than about 400 lines, and pyproject.toml lists every package."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "curate"
MAX_LINES = 400
#: the data flow: a stage may import from the stages before it and from the shared modules
STAGES = ["ingest", "clean", "scoring", "dedup", "train", "mix", "export", "audit", "report", "engines"]
SHARED = {"errors", "version", "atomic", "layout", "db", "hashing", "config", "tables", "embed", "memory", "progress", "storage"}
TOP = {"cli", "demo"}  # they call every stage


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = modules()


def imports(path: Path, name: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([mod] if mod else []))
            for a in node.names:
                found.append((mod, a.name, node.lineno))
    return [f for f in found if f[0] == "curate" or f[0].startswith("curate.")]


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, p in MODULES.items():
        for mod, nm, _ in imports(p, m):
            target = f"{mod}.{nm}" if nm and f"{mod}.{nm}" in MODULES else mod
            if target in MODULES and target != m:
                graph[m].add(target)
    return graph


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "curate"


def test_the_stage_packages_exist():
    for stage in STAGES:
        assert (PKG / stage / "__init__.py").is_file(), stage
    for mod in SHARED:
        assert (PKG / f"{mod}.py").is_file() or (PKG / mod / "__init__.py").is_file(), mod


def test_no_import_cycles():
    graph = edges()
    index, low, stack, on, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_stages_import_only_earlier_stages_and_shared_modules():
    order = {s: i for i, s in enumerate(STAGES)}
    bad = []
    for m, targets in edges().items():
        src = stage_of(m)
        if src in TOP or m == "curate":
            continue
        for t in targets:
            dst = stage_of(t)
            if dst in SHARED or dst == src or t == "curate":
                continue
            if src in SHARED or dst in TOP or order.get(dst, 99) > order.get(src, -1):
                bad.append(f"{m} -> {t}")
    assert bad == []


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for root in (PKG, REPO / "tests", REPO / "benchmarks"):
        for p in sorted(root.rglob("*.py")):
            name = ".".join(p.relative_to(REPO).with_suffix("").parts)
            for mod, nm, line in imports(p, name):
                if nm.startswith("_") and nm != "__version__" or any(x.startswith("_") and x != "__init__"
                                                                     for x in mod.split(".")):
                    bad.append(f"{p.relative_to(REPO)}:{line}: {mod} import {nm}")
    assert bad == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES


def test_pyproject_lists_every_package():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(data["tool"]["setuptools"]["packages"])
    present = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert present <= listed
    assert listed - present == {"curate.scoring.chains"}
    assert data["tool"]["setuptools"]["package-dir"]["curate.scoring.chains"] == "filters"


#: modules that spell files of other tools' formats or of the package's own data (a
#: sentence-transformers model folder, a fastText training file, a trained classifier's folder,
#: the bundled language model, wordfreq's data, the packaged chains), the demo's sample folder,
#: or hidden temporary names (curate.atomic's staging folders beside an output), and the
#: trainers' own files that an export for them must name (open_clip's sizes.json, Energon's
#: .nv-meta and dataset.yaml, MosaicML's MDS index.json)
OTHER_FORMATS = {"curate.export.trainers", "curate.export.mds", "curate.atomic", "curate.embed", "curate.train.fit", "curate.scoring.filters.classifier", "curate.demo",
                 "curate.scoring.filters.language", "curate.scoring.filters.specificity_tables",
                 "curate.scoring.filters.judgement",
                 "curate.scoring.chain"}


def layout_file_names() -> set[str]:
    """The file names curate.layout owns (its upper-case constants that name a file)."""
    import re

    import curate.layout as layout

    values = [v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)]
    return {v for v in values if re.fullmatch(r"[\w*-]+\.\w+", v)}


def docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_every_file_name_is_spelled_out_in_one_module():
    """Only curate.layout names the files of runs, mixtures, exports and caches: no other
    module joins a path with a literal (``out / "index.json"``, ``folder / f"part-{i}"``) or
    spells one of layout's names ("manifest.json", "run.json", ...)."""
    names = layout_file_names()
    assert {"run.json", "manifest.json", "manifest.parquet", "index.json", "neighbors.json"} <= names
    bad = []
    for m, p in MODULES.items():
        if m == "curate.layout":
            continue
        tree = ast.parse(p.read_text())
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and m not in OTHER_FORMATS
                    and (isinstance(node.right, ast.JoinedStr)
                         or isinstance(node.right, ast.Constant) and isinstance(node.right.value, str))):
                bad.append(f"{m}:{node.lineno}: / {ast.unparse(node.right)}")
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in skip:
                bad.append(f"{m}:{node.lineno}: {node.value!r}")
    assert sorted(set(bad)) == []


def test_no_test_module_imports_another_and_each_lives_in_a_stage_folder():
    """Shared test code lives in tests/helpers.py (and nearcopy.py), not in test modules;
    test modules sit in one folder per stage (or project/), none at the top."""
    tests = REPO / "tests"
    assert not sorted(p.name for p in tests.glob("test_*.py"))
    bad = []
    for p in sorted(tests.rglob("test_*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("test_"):
                bad.append(f"{p.relative_to(tests)}: from {node.module}")
            if isinstance(node, ast.Import) and any(a.name.startswith("test_") for a in node.names):
                bad.append(f"{p.relative_to(tests)}: import")
    assert bad == []
