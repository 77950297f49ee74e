"""The package's structure (docs/architecture.md): no import cycle anywhere, the sweeper plugin included;
nobody imports the entry points; each subpackage imports only the subpackages its __init__.py names; the
components (data, models, the trainer, fused training, reporting) never see a config; the scoring and
reporting code loads neither Hydra nor the training loop; one module turns config into objects with
Hydra's `instantiate`; no module is over 400 lines; the repository imports no module by its old path.

Two views of the graph: what each module imports when it is imported alone in a fresh interpreter (an
`__import__` hook records who imports whom and who first loaded each module), and a static scan (ast) of
every import statement in src/, those inside functions included: a lazy import that closes a cycle hides
it from the interpreter, not from the reader, so the layers hold for every import statement.

An edge goes to the module an import names, not to the packages above it: `from logitlab.data.splits
import SplitData` runs logitlab/data/__init__.py too, but a package's __init__ is its face (its docstring
and the names it re-exports), and a module of the package does not depend on its face by importing a
sibling. An import that names the package itself (`from logitlab.data import SplitData`) is an edge to it.
The checks run on any source tree (`Graph`), and test_the_checks_catch_what_they_forbid runs them on a
small package with a cycle, an import of an entry point and an import its layer forbids."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGES = ("logitlab", "hydra_plugins.logitlab_sweepers")
ENTRY_POINTS = ("logitlab.train", "logitlab.predict", "logitlab.evaluate", "logitlab.export", "logitlab.summary")
# Beside the entry points, the top of logitlab holds only its __init__ and the old module paths.
TOP = {"logitlab", "logitlab._moved", *ENTRY_POINTS}
# The scoring and reporting code, and what importing any of it must not load.
SCORING_AND_REPORTING = ("logitlab.reporting.scoring", "logitlab.reporting.diagnostics",
                         "logitlab.reporting.tensorboard_log", "logitlab.reporting.sweep_table",
                         "logitlab.reporting.sweep_plots", "logitlab.trainer.objective", "logitlab.trainer.evaluation",
                         "logitlab.trainer.hooks", "logitlab.trainer.rundir")
NOT_FOR_SCORING = ("hydra", "omegaconf", "logitlab.trainer.loop", *ENTRY_POINTS)
# Components take typed arguments and finished objects (STYLE.md: "Components never see cfg"); what reads a
# config is config/, runs/, fused/group.py (a fused group's train.py) and the entry points.
COMPONENTS = ("logitlab.data", "logitlab.models", "logitlab.trainer", "logitlab.reporting", "logitlab.fused.stacked",
              "logitlab.fused.loop")
CONFIG_LIBRARIES = ("hydra", "omegaconf")
MAX_LINES = 400
# Where Hydra's instantiate may be called: one module of logitlab; the sweeper plugin builds Optuna's
# samplers and pruners from their specs in two of its own.
INSTANTIATE_IN = {"logitlab": {"logitlab.config.build"},
                  "hydra_plugins.logitlab_sweepers": {"hydra_plugins.logitlab_sweepers._study",
                                                      "hydra_plugins.logitlab_sweepers._pruning"}}


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PACKAGES)


def _package_of(name: str) -> str:
    return next(p for p in sorted(PACKAGES, key=len, reverse=True) if name == p or name.startswith(p + "."))


def package_modules(src: Path = SRC, packages=PACKAGES) -> dict[str, Path]:
    """module name -> file, for every .py file of the packages (a new module is covered without listing it)."""
    modules = {}
    for package in packages:
        for path in sorted(src.joinpath(*package.split(".")).rglob("*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = package_modules()


# ------------------------------------------------------------------------------------ the static scan
@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # src/logitlab/x.py:12
    module_level: bool  # False: inside a function (or under `if TYPE_CHECKING:`)


def _walk(node: ast.AST, module_level: bool = True):
    """Every node with whether it runs when the module is imported."""
    for child in ast.iter_child_nodes(node):
        yield child, module_level
        lazy = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or (
            isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
        yield from _walk(child, module_level and not lazy)


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _imported_names(node: ast.AST, module: str, path: Path) -> list[str]:
    """The modules an import statement names: `import a.b` names a.b; `from a import b` names a, and a.b
    where b is a module (the packages above them are not named: see the module docstring)."""
    if isinstance(node, ast.Import):
        return sorted({alias.name for alias in node.names})
    if isinstance(node, ast.ImportFrom):
        base = _absolute(node, module, path)
        return sorted({base} | {f"{base}.{alias.name}" for alias in node.names})
    return []


def _where(path: Path, node: ast.AST, root: Path = ROOT) -> str:
    return f"{path.relative_to(root)}:{node.lineno}"


def static_imports(modules: dict[str, Path] = MODULES, root: Path = ROOT, also=()) -> list[Import]:
    """Every import statement of the modules that names one of them (or one of `also`)."""
    found = []
    for module, path in modules.items():
        for node, module_level in _walk(ast.parse(path.read_text(), str(path))):
            found += [Import(module, name, _where(path, node, root), module_level)
                      for name in _imported_names(node, module, path)
                      if (name in modules or name in also) and name != module]
    return found


STATIC = static_imports(also=CONFIG_LIBRARIES)
STATIC_OURS = [i for i in STATIC if i.imported in MODULES]


# ------------------------------------------------------------------- fresh interpreters, one per module
# Run as `python -c HOOK module out.json`. Records (importer, imported) for every import statement executed
# by a package module while `module` is imported, and which module's import statement first loaded each
# module in sys.modules (for the chain that explains why something got loaded).
HOOK = r"""
import builtins, importlib, itertools, json, sys, traceback

def import_alone(target, out):
  PACKAGES = ("logitlab", "hydra_plugins.logitlab_sweepers")
  ours = lambda name: any(name == p or name.startswith(p + ".") for p in PACKAGES)
  edges, loaded_by = set(), {}
  real_import = builtins.__import__

  def tracking_import(name, globals=None, locals=None, fromlist=(), level=0):
      importer = (globals or {}).get("__name__") or "?"
      count = len(sys.modules)
      try:
          return real_import(name, globals, locals, fromlist, level)
      finally:  # also when the import fails: what it loaded up to then still counts
          if len(sys.modules) > count:  # inner imports attributed their own modules first
              for new in list(itertools.islice(sys.modules, count, None)):
                  loaded_by.setdefault(new, importer)
          if ours(importer):
              absolute = name
              if level:
                  package = globals.get("__package__") or importer.rpartition(".")[0]
                  base = package.rsplit(".", level - 1)[0] if level > 1 else package
                  absolute = f"{base}.{name}" if name else base
              names = {absolute}  # the module the statement names, not the packages above it
              names |= {f"{absolute}.{item}" for item in fromlist or () if f"{absolute}.{item}" in sys.modules}
              edges.update((importer, n) for n in names if ours(n) and n != importer)

  builtins.__import__ = tracking_import
  try:
      module, error = importlib.import_module(target), None
  except BaseException:  # what was recorded up to the failure still counts
      module, error = None, traceback.format_exc(limit=-4)
  builtins.__import__ = real_import
  with open(out, "w") as f:
      json.dump({"file": getattr(module, "__file__", None), "error": error, "edges": sorted(edges),
                 "loaded_by": loaded_by, "modules": sorted(sys.modules)}, f)

# torch is loaded once here, before any package module, and each module is imported in a child forked from
# this process: a fork instead of a new interpreter and torch's ~1.5 s import per module. torch is nothing
# the checks look for, and no package module is loaded before the child imports its own.
import os
import torch  # noqa: F401

for target, out in zip(sys.argv[1::2], sys.argv[2::2]):
    pid = os.fork()
    if pid == 0:
        try:
            import_alone(target, out)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
"""


@dataclass
class Alone:
    """What importing one module alone did."""

    module: str
    error: str | None  # the traceback's tail if the import failed
    file: str | None = None
    edges: tuple = ()
    loaded_by: dict = field(default_factory=dict)
    modules: frozenset = frozenset()

    def chain(self, name: str) -> str:
        """`target -> ... -> name`: whose import statement loaded `name`, and whose loaded that, ..."""
        chain, seen = [name], {name}
        while chain[-1] in self.loaded_by and chain[-1] != self.module:
            chain.append(self.loaded_by[chain[-1]])
            if chain[-1] in seen:
                break
            seen.add(chain[-1])
        if chain[-1] != self.module:  # a module whose own import failed is gone from sys.modules
            chain.append(f"{self.module} -> ...")
        return " -> ".join(reversed(chain))


def _import_each_alone(modules: list[str], folder: Path) -> dict[str, Alone]:
    # The checkout's src/ first, whatever else the environment has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    outs = {m: folder / f"{m}.json" for m in modules}
    proc = subprocess.run([sys.executable, "-c", HOOK, *(str(a) for m in modules for a in (m, outs[m]))],
                          capture_output=True, text=True, timeout=600, cwd=folder, env=env)
    found = {}
    for module, out in outs.items():
        if not out.exists():  # the child died before writing (or the parent did)
            found[module] = Alone(module, f"exit {proc.returncode}: {proc.stderr[-1500:]}")
            continue
        result = json.loads(out.read_text())
        found[module] = Alone(module, result["error"], result["file"], tuple(map(tuple, result["edges"])),
                              result["loaded_by"], frozenset(result["modules"]))
    return found


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[str, Alone]:
    """Every package module imported alone (a process forked for each from one that holds only torch),
    the modules shared between one such process per core."""
    folder = tmp_path_factory.mktemp("imports")
    workers = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2, 4))
    shares = [list(MODULES)[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = {}
        for part in pool.map(lambda share: _import_each_alone(share, folder), shares):
            found.update(part)
        return {m: found[m] for m in MODULES}


# --------------------------------------------------------------------------------------------- cycles
def _cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """One cycle (a, b, ..., a) for each strongly connected component that has one (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_shortest_cycle(graph, component) for component in components]


def _shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """(start, ..., start) inside one strongly connected component, breadth first."""
    start = min(component)
    paths, frontier = {start: [start]}, [start]
    while True:
        for v in frontier:
            if start in graph[v]:
                return paths[v] + [start]
        grown = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    grown.append(w)
        frontier = grown


def _describe(cycle: list[str], edges: dict[tuple[str, str], list[str]]) -> str:
    steps = [cycle[0]] + [f"-> {b}  ({', '.join(edges[a, b])})" for a, b in zip(cycle, cycle[1:])]
    return "\n    ".join(steps)


def _edges(imports) -> dict[tuple[str, str], list[str]]:
    edges = defaultdict(list)
    for i in imports:
        edges[i.importer, i.imported].append(i.where)
    return edges


def test_every_module_imports_alone_from_the_checkout(alone):
    failed = [f"{m}:\n{a.error}" for m, a in alone.items() if a.error]
    assert not failed, "importing a module alone in a fresh interpreter failed:\n" + "\n".join(failed)
    elsewhere = [f"{m}: {a.file}" for m, a in alone.items() if a.file and not Path(a.file).resolve().is_relative_to(SRC)]
    assert not elsewhere, f"imported from outside {SRC}:\n" + "\n".join(elsewhere)


def test_no_import_cycle_at_import_time(alone):
    """Module-level imports, as recorded in fresh interpreters and as written in the source."""
    edges = _edges(i for i in STATIC_OURS if i.module_level)
    for a in alone.values():
        for importer, imported in a.edges:
            edges[importer, imported].append("at import time")
    edges = {e: sorted(set(w)) for e, w in edges.items()}
    cycles = _cycles(edges)
    assert not cycles, "import cycles at import time:\n  " + "\n  ".join(_describe(c, edges) for c in cycles)


def cycle_report(imports) -> list[str]:
    edges = _edges(imports)
    return [_describe(c, edges) for c in _cycles(edges)]


def test_no_import_cycle_anywhere_including_imports_inside_functions():
    """Every import statement, at module level or inside a function, in logitlab and in the sweeper
    plugin: a lazy import that closes a cycle hides it from the interpreter, not from the reader."""
    cycles = cycle_report(STATIC_OURS)
    assert not cycles, "import cycles (imports inside functions included):\n  " + "\n  ".join(cycles)


# ------------------------------------------------------------------------------ the entry points on top
def entry_point_imports(imports, entry_points=ENTRY_POINTS) -> list[str]:
    return [f"{i.importer} imports {i.imported} ({i.where}{'' if i.module_level else ', inside a function'})"
            for i in imports if i.imported in entry_points]


def test_nothing_imports_an_entry_point(alone):
    found = entry_point_imports(STATIC_OURS)
    found += [f"{importer} imports {imported} (at import time of {a.module})"
              for a in alone.values() for importer, imported in a.edges if imported in ENTRY_POINTS]
    conf = SRC / "logitlab" / "conf"
    for path in sorted(conf.rglob("*.yaml")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            target = re.search(r"_target_:\s*['\"]?([\w.]+)", line)
            if target and any(target[1] == e or target[1].startswith(e + ".") for e in ENTRY_POINTS):
                found.append(f"{path.relative_to(ROOT)}:{n} instantiates {target[1]}")
    assert not found, ("the entry points (" + ", ".join(ENTRY_POINTS) + ") are the top floor; nothing may "
                       "import them. Move what is shared into a module below them:\n  " + "\n  ".join(sorted(set(found))))


# ----------------------------------------------------------------- scoring and reporting without Hydra
@pytest.mark.parametrize("module", SCORING_AND_REPORTING)
def test_scoring_and_reporting_load_neither_hydra_nor_the_trainer(alone, module):
    a = alone[module]
    loaded = [name for name in NOT_FOR_SCORING if name in a.modules]
    assert not loaded, f"importing {module} alone loads {', '.join(loaded)}:\n  " + "\n  ".join(
        a.chain(name) for name in loaded)
    assert not a.error, f"importing {module} alone failed:\n{a.error}"


def reaching(module: str, forbidden, modules: dict[str, Path] = MODULES) -> dict[str, list[str]]:
    """The shortest chain of import statements (inside functions too) from `module` through package modules
    to each module of `forbidden` (or a submodule of one) that it reaches: {chain: [where, ...]}."""
    def banned(name):
        return any(name == f or name.startswith(f + ".") for f in forbidden)

    imports = defaultdict(list)  # importer -> [(imported, where)], package modules and what is forbidden
    for path_module, path in modules.items():
        for node, _ in _walk(ast.parse(path.read_text(), str(path))):
            for name in _imported_names(node, path_module, path):
                if (name in modules or banned(name)) and name != path_module:
                    imports[path_module].append((name, _where(path, node)))
    chains, todo, found = {module: [module]}, [module], defaultdict(list)
    while todo:  # breadth first: the shortest chain to each module
        current = todo.pop(0)
        for name, where in imports[current]:
            if banned(name):
                found[" -> ".join(chains[current] + [name])].append(where)
            elif name not in chains:
                chains[name] = chains[current] + [name]
                todo.append(name)
    return found


@pytest.mark.parametrize("module", SCORING_AND_REPORTING)
def test_scoring_and_reporting_import_neither_hydra_nor_the_trainer_even_inside_functions(module):
    """The same, statically: no import statement of the module, or of a package module it imports
    (inside functions too), names Hydra, OmegaConf, the training loop or an entry point."""
    found = reaching(module, NOT_FOR_SCORING)
    assert not found, f"{module} reaches what scoring and reporting must not import:\n  " + "\n  ".join(
        f"{chain}  ({', '.join(wheres)})" for chain, wheres in found.items())


def components() -> list[str]:
    return sorted(m for m in MODULES if any(m == c or m.startswith(c + ".") for c in COMPONENTS))


@pytest.mark.parametrize("module", components())
def test_components_never_see_a_config(module):
    """No import statement of a component, or of a package module it imports (inside functions too),
    names Hydra or OmegaConf: components receive typed values and finished objects, so that they work
    and are tested without Hydra."""
    found = reaching(module, CONFIG_LIBRARIES)
    assert not found, (f"{module} is a component but reaches Hydra or OmegaConf; take the values as arguments "
                       f"(config/build.py turns the config into them):\n  " + "\n  ".join(
                           f"{chain}  ({', '.join(wheres)})" for chain, wheres in found.items()))


# ---------------------------------------------------------------------- one place for config -> objects
def hydra_instantiate_uses(path: Path) -> list[str]:
    """'file:line' of every call of Hydra's instantiate (or its alias `call`) in a file, however imported."""
    tree = ast.parse(path.read_text(), str(path))
    functions = {"instantiate", "call"}
    names, modules, uses = set(), set(), []  # local names bound to the function / to hydra.utils or hydra
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if (node.module == "hydra.utils" or node.module.startswith("hydra._internal.instantiate")) \
                        and alias.name in functions:
                    names.add(alias.asname or alias.name)
                elif node.module == "hydra" and alias.name == "utils":
                    modules.add(alias.asname or "utils")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "hydra" or alias.name.startswith("hydra.utils"):
                    modules.add(alias.asname or "hydra")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in names:
            uses.append(_where(path, node))
        elif isinstance(func, ast.Attribute) and func.attr in functions:
            dotted = ast.unparse(func.value)
            if dotted in modules or dotted in {f"{m}.utils" for m in modules}:
                uses.append(_where(path, node))
    return uses


def test_one_module_turns_config_into_objects():
    uses = {m: hydra_instantiate_uses(p) for m, p in MODULES.items()}
    wrong = []
    for package, allowed in INSTANTIATE_IN.items():
        callers = {m for m, u in uses.items() if u and _package_of(m) == package}
        wrong += [f"{m} calls hydra.utils.instantiate ({', '.join(uses[m])}); only {', '.join(sorted(allowed))} may"
                  for m in sorted(callers - allowed)]
    assert not wrong, "config is turned into objects in one place:\n  " + "\n  ".join(wrong)
    assert uses["logitlab.config.build"], ("logitlab.config.build no longer calls hydra.utils.instantiate; "
                                           "update INSTANTIATE_IN")


# ----------------------------------------------------------------------------------- the layers by folder
def subpackages(modules: dict[str, Path] = MODULES, root: str = "logitlab") -> dict[str, Path]:
    """logitlab's subpackages (data, models, trainer, ...) -> their __init__.py."""
    return {m.split(".")[1]: p for m, p in modules.items()
            if p.name == "__init__.py" and m.count(".") == 1 and m.startswith(root + ".")}


def allowed_imports(init: Path) -> set[str]:
    """What a subpackage's __init__ docstring says it may import: the line `May import (of logitlab): a, b.`
    (or `only ConfigError.`), up to its first period."""
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    line = next((line for line in doc.splitlines() if line.startswith("May import (of logitlab):")), None)
    assert line is not None, f"{init}: its docstring has no line 'May import (of logitlab): ...'"
    names = line.split(":", 1)[1].split(".")[0]
    return set() if "only ConfigError" in names else {n.strip() for n in names.split(",") if n.strip()}


def layer_violations(imports, modules: dict[str, Path] = MODULES, root: str = "logitlab") -> list[str]:
    """Imports from one subpackage into another that its __init__ does not name."""
    subs = subpackages(modules, root)
    allowed = {sub: allowed_imports(init) for sub, init in subs.items()}

    def sub_of(module):
        parts = module.split(".")
        return parts[1] if parts[0] == root and len(parts) > 1 and parts[1] in subs else None

    wrong = {}  # (importer, where, subpackage) -> the message naming the most specific module imported
    for i in sorted(imports, key=lambda i: len(i.imported)):
        a, b = sub_of(i.importer), sub_of(i.imported)
        if a is not None and b is not None and a != b and b not in allowed[a]:
            wrong[i.importer, i.where, b] = (f"{i.importer} imports {i.imported} ({i.where}): {root}/{a}/__init__.py "
                                            f"allows {', '.join(sorted(allowed[a])) or 'no other subpackage'}")
    return sorted(wrong.values())


def test_each_subpackage_imports_only_what_its_init_names():
    wrong = layer_violations(STATIC_OURS)
    assert not wrong, ("an import against the direction of the layers; move the shared code down, or if the "
                       "design changed say so in the __init__ and docs/architecture.md:\n  " + "\n  ".join(wrong))


def test_the_subpackages_form_layers():
    """What the __init__s allow has no cycle: each subpackage stands above those it may import."""
    allowed = {sub: allowed_imports(init) for sub, init in subpackages().items()}
    unknown = {f"{sub}: {name}" for sub, names in allowed.items() for name in names - set(allowed)}
    assert not unknown, f"a 'May import' line names no subpackage: {', '.join(sorted(unknown))}"
    cycles = _cycles({(a, b): [] for a, names in allowed.items() for b in names})
    assert not cycles, f"the subpackages' allowed imports go round: {cycles}"


def test_every_subpackage_names_its_modules():
    """A subpackage's __init__ docstring says what lives there: each of its modules, by file name."""
    missing = []
    for sub, init in subpackages().items():
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        missing += [f"{sub}/{p.name}" for p in sorted(init.parent.glob("*.py"))
                    if p.name != "__init__.py" and p.name not in doc]
    assert not missing, f"modules their package's __init__ docstring does not name: {', '.join(missing)}"


def test_only_the_entry_points_sit_on_top():
    top = {m for m in MODULES if m.startswith("logitlab") and m.count(".") <= 1 and m.split(".")[-1] not in
           subpackages()} - {"logitlab.conf"}
    assert top <= TOP, (f"{', '.join(sorted(top - TOP))} sit beside the entry points; give each a subpackage "
                        f"(docs/architecture.md says which holds what)")


def test_no_module_over_400_lines():
    long = {f"{p.relative_to(ROOT)}: {n}" for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines; split where a file has two jobs:\n  " + "\n  ".join(sorted(long))


def test_the_repository_imports_no_module_by_its_old_path():
    """logitlab/_moved.py keeps the flat layout's paths alive for code outside this repository; inside it,
    every import names the module where it lives."""
    from logitlab._moved import MOVED

    found = []
    for folder in ("src", "tests", "bench", "tools", "experiments"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = ".".join(path.relative_to(SRC).with_suffix("").parts) if folder == "src" else "__test__"
            for node, _ in _walk(ast.parse(path.read_text(), str(path))):
                found += [f"{_where(path, node)}: {name} (now {MOVED[name]})"
                          for name in _imported_names(node, module, path) if name in MOVED]
    assert not found, "imports of old module paths:\n  " + "\n  ".join(found)


# ------------------------------------------------------------------------------ the checks, checked
SMALL = {
    "pkg/__init__.py": "",
    "pkg/train.py": "from pkg.low import thing\n",
    "pkg/low/__init__.py": '"""Below everything.\n\nMay import (of logitlab): only ConfigError.\n"""\n',
    "pkg/low/thing.py": "def f():\n    from pkg.high import other  # against the layers, and lazily\n",
    "pkg/high/__init__.py": '"""Above low.\n\nMay import (of logitlab): low.\n"""\n',
    "pkg/high/other.py": "from pkg.low import thing\n\n\ndef g():\n    from pkg import train  # an entry point\n",
}


def test_the_checks_catch_what_they_forbid(tmp_path):
    """On a small package with a cycle closed inside a function, an import of an entry point and an import
    against its layers, each check fails and names it; without them it passes."""
    for name, text in SMALL.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = package_modules(tmp_path, ("pkg",))
    imports = static_imports(modules, tmp_path)
    assert cycle_report(imports) == ["pkg.high.other\n    -> pkg.low.thing  (pkg/high/other.py:1)\n    "
                                     "-> pkg.high.other  (pkg/low/thing.py:2)"]
    assert entry_point_imports(imports, ("pkg.train",)) == [
        "pkg.high.other imports pkg.train (pkg/high/other.py:5, inside a function)"]
    assert [w.split(":")[0] for w in layer_violations(imports, modules, "pkg")] == [
        "pkg.low.thing imports pkg.high.other (pkg/low/thing.py"]
    (tmp_path / "pkg/low/thing.py").write_text("def f():\n    pass\n")
    (tmp_path / "pkg/high/other.py").write_text("from pkg.low import thing\n")
    imports = static_imports(modules, tmp_path)
    assert not cycle_report(imports) and not entry_point_imports(imports, ("pkg.train",))
    assert not layer_violations(imports, modules, "pkg")
