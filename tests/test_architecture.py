"""The package's shape as a contract: which part may import what, sizes, and portable paths.

The import graph is read from the source (``ast``), not by importing anything: every
``import`` / ``from ... import`` in edgecam/, relative imports resolved, each marked as
module-level (runs when the module is imported) or lazy (inside a function: runs only when
that function is called). The rules below are data; each test prints every offender as
``file:line: edge``. The last tests prove the analysis can fail, on synthetic sources.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "edgecam"
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}

# -- the parts and their rules ------------------------------------------------------------------
# The top-level modules and sub-packages of edgecam. A new one must be added here (and given
# its rules), or test_every_part_is_declared fails.
PARTS = frozenset({"cli", "config", "console", "errors", "files", "plots", "data", "modelfile", "runtime",
                   "evaluation", "serving", "collect", "training", "datasets", "doctor", "fleet", "mqtt"})
ENTRY_POINTS = frozenset({"__init__", "__main__"})  # edgecam/__init__.py, edgecam/__main__.py
# What runs on a Raspberry Pi (and under `edgecam evaluate` anywhere): never TensorFlow.
EDGE = frozenset({"runtime", "modelfile", "data", "evaluation", "serving", "collect", "config", "console",
                  "errors", "files", "datasets", "doctor", "fleet", "mqtt"})
HEAVY = frozenset({"tensorflow", "keras", "tf_keras", "matplotlib"})


@dataclass(frozen=True)
class Allowed:
    """Third-party top-level modules a part may import: anywhere, or only inside functions."""

    anywhere: frozenset = frozenset()
    lazily: frozenset = frozenset()


def allowed(anywhere=(), lazily=()) -> Allowed:
    return Allowed(frozenset(anywhere), frozenset(lazily))


# Beyond the standard library (sys.stdlib_module_names). Keys are parts, or single modules
# that get more than their part. training (the workstation side) has no list.
THIRD_PARTY = {
    # picamera2 exists only on a Pi and tflite_runtime is a fallback: both only where used.
    "runtime": allowed({"numpy", "cv2", "ai_edge_litert"}, {"tflite_runtime", "picamera2"}),
    "modelfile": allowed({"numpy", "cv2", "flatbuffers", "ai_edge_litert"}),
    "serving": allowed({"numpy", "cv2"}),
    "collect": allowed({"numpy", "cv2"}),
    "config": allowed(),
    "edgecam.config.loader": allowed({"yaml"}),  # the one YAML reader
    "data": allowed({"numpy", "PIL"}),  # progress bars (tqdm) only through edgecam.console
    # edgecam datasets shift: what a Pi camera does to a photo, with OpenCV (as the runtime has it).
    "edgecam.data.camera_shift": allowed({"numpy", "PIL", "cv2"}),
    "evaluation": allowed({"numpy"}),
    "console": allowed(lazily={"tqdm"}),
    "errors": allowed(),
    "files": allowed(),
    "plots": allowed({"numpy"}, {"matplotlib"}),
    "datasets": allowed(),  # downloads with the standard library only: works on any install
    # doctor tries what a part would import, inside the check that needs it (a missing one is a finding).
    "doctor": allowed(lazily={"numpy", "cv2"}),
    "fleet": allowed(lazily={"paho"}),  # edgecam fleet: paho-mqtt only once a broker is contacted
    # edgecam run --mqtt: paho-mqtt (pure Python), and OpenCV to encode snapshots. Loaded only with --mqtt.
    "mqtt": allowed({"paho", "numpy", "cv2"}),
    "cli": allowed({"click"}, {"cv2"}),  # cv2 only to tell people how to install it
    "__main__": allowed(),
    "__init__": allowed(),
}
# Parts each part must not import at all (edgecam.<part> and anything under it).
# The config modules the runtime may import: dataclasses and the URL redaction rule, stdlib only.
RUNTIME_CONFIG = ("edgecam.config.camera", "edgecam.config.redact")
FORBIDDEN_PARTS = {
    # mqtt reaches the loop as an extra Output built by the CLI, like the web page.
    "runtime": {"serving", "collect", "evaluation", "data", "training", "mqtt"},
}
# Parts a part may import, if it is restricted to a few (itself is always allowed).
ONLY_PARTS = {
    "modelfile": {"errors", "files"},
    "config": {"errors"},  # ConfigError lives in edgecam.errors, which imports nothing
    "errors": set(),
    "files": {"errors"},
    "console": {"errors"},
    "datasets": {"errors", "files", "console"},
    "doctor": {"errors", "files", "runtime", "modelfile"},
    "fleet": {"errors", "console", "config"},  # runs wherever paho does: no OpenCV, no runtime
    "mqtt": {"errors", "console", "config", "runtime", "__init__"},  # __init__: edgecam.__version__
}
# Modules nobody but the listed importers may import.
PRIVATE = {"edgecam.cli": {"edgecam.cli", "edgecam.__main__"}}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


# -- reading the graph ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Module:
    name: str  # edgecam.runtime.loop
    path: str  # edgecam/runtime/loop.py, relative to the repository
    source: str

    @property
    def is_package(self) -> bool:
        return self.path.endswith("__init__.py")

    @property
    def part(self) -> str:
        return part_of(self.name)


@dataclass(frozen=True)
class Edge:
    module: Module
    line: int
    target: str  # the imported module, resolved: "edgecam.config.camera", "cv2", "tensorflow.lite"
    lazy: bool  # inside a function: runs only when called

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    @property
    def internal(self) -> bool:
        return self.top == "edgecam"

    def __str__(self) -> str:
        where = " (in a function)" if self.lazy else ""
        return f"{self.module.path}:{self.line}: {self.module.name} -> {self.target}{where}"


def part_of(name: str) -> str:
    """``edgecam.runtime.loop`` → ``runtime``; ``edgecam`` itself → ``__init__``."""
    pieces = name.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def load_package(root: Path = PACKAGE, overrides: dict[str, str] | None = None) -> dict[str, Module]:
    """Every module of the package by name; ``overrides`` replaces (or adds) sources by relative path."""
    sources = {p.relative_to(root.parent).as_posix(): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))}
    sources.update(overrides or {})
    modules = {}
    for path, source in sources.items():
        name = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        modules[name] = Module(name, path, source)
    return modules


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: Module, known: set[str]):
        self.module, self.known, self.depth, self.edges = module, known, 0, []

    def visit_FunctionDef(self, node):  # noqa: N802 - ast.NodeVisitor's naming
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def _add(self, node, target: str) -> None:
        self.edges.append(Edge(self.module, node.lineno, target, self.depth > 0))

    def visit_Import(self, node):  # noqa: N802
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node):  # noqa: N802
        base = resolve(self.module, node.module, node.level)
        for alias in node.names:
            sub = f"{base}.{alias.name}"  # `from edgecam import files` imports the module edgecam.files
            self._add(node, sub if sub in self.known else base)


def resolve(module: Module, target: str | None, level: int) -> str:
    """The absolute module a (possibly relative) ``from`` import names."""
    if level == 0:
        return target or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    if level - 1 >= len(package):
        raise ValueError(f"{module.path}: relative import beyond the top-level package")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_edges(modules: dict[str, Module]) -> list[Edge]:
    known = set(modules)
    edges = []
    for module in modules.values():
        visitor = _ImportVisitor(module, known)
        visitor.visit(ast.parse(module.source, module.path))
        edges += visitor.edges
    return edges


def target_part(edge: Edge) -> str | None:
    return part_of(edge.target) if edge.internal else None


# -- the rules (each returns its violations, one line each) ---------------------------------------
def undeclared_parts(modules: dict[str, Module]) -> list[str]:
    found = {m.part for m in modules.values()} - PARTS - ENTRY_POINTS
    return [f"edgecam/{part}: not a declared part (add it to PARTS with its rules)" for part in sorted(found)]


def heavy_imports(edges: list[Edge]) -> list[str]:
    """TensorFlow, Keras, matplotlib and edgecam.training stay off the edge side; plots and cli load them lazily."""
    problems = []
    for e in edges:
        part = e.module.part
        heavy = e.top in HEAVY or e.target == "edgecam.training" or e.target.startswith("edgecam.training.")
        if part in EDGE and heavy:
            problems.append(f"{e}: the edge side ({part}) must never import TensorFlow, Keras, matplotlib "
                            "or edgecam.training")
        elif part in EDGE and target_part(e) == "plots" and not e.lazy:
            problems.append(f"{e}: the edge side may import edgecam.plots only inside a function")
        elif part in ("plots", "cli") and heavy and not e.lazy:
            problems.append(f"{e}: {part} may import {e.target} only inside a function")
    return problems


def third_party_imports(edges: list[Edge]) -> list[str]:
    problems = []
    for e in edges:
        if e.internal or e.top in STDLIB or e.module.part == "training":
            continue
        rules = [THIRD_PARTY[key] for key in (e.module.part, e.module.name) if key in THIRD_PARTY]
        if not rules:
            problems.append(f"{e}: {e.module.part} has no third-party allow-list (add one to THIRD_PARTY)")
            continue
        if any(e.top in r.anywhere for r in rules):
            continue
        if any(e.top in r.lazily for r in rules):
            if not e.lazy:
                problems.append(f"{e}: {e.top} may be imported only inside a function here")
            continue
        permitted = ", ".join(sorted(set().union(*(r.anywhere | r.lazily for r in rules)))) or "nothing else"
        problems.append(f"{e}: {e.top} is not allowed in {e.module.part} (allowed: stdlib, {permitted})")
    return problems


def internal_imports(edges: list[Edge]) -> list[str]:
    problems = []
    for e in edges:
        if not e.internal:
            continue
        part, target = e.module.part, target_part(e)
        for private, importers in PRIVATE.items():
            if (e.target == private or e.target.startswith(private + ".")) and e.module.name not in importers:
                problems.append(f"{e}: only {', '.join(sorted(importers))} may import {private}")
        if target in FORBIDDEN_PARTS.get(part, ()):
            problems.append(f"{e}: {part} must not import {target}")
        if part in ONLY_PARTS and target not in ONLY_PARTS[part] | {part, "__init__"}:
            problems.append(f"{e}: {part} may import only {', '.join(sorted(ONLY_PARTS[part] | {part}))}")
        if part == "runtime" and target == "config" and e.target not in RUNTIME_CONFIG:
            problems.append(f"{e}: the runtime may use only {', '.join(RUNTIME_CONFIG)} (stdlib only, no YAML)")
        if e.module.name in ("edgecam.config.camera", "edgecam.config") and e.target == "edgecam.config.loader":
            problems.append(f"{e}: {e.module.name} must not import the YAML loader (the runtime imports it)")
    return problems


def part_cycles(edges: list[Edge]) -> list[str]:
    """Cycles between parts through module-level imports (lazy imports break cycles at import time)."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        target = target_part(e)
        if e.lazy or target is None or target in (e.module.part, "__init__"):
            continue
        graph.setdefault(e.module.part, {}).setdefault(target, e)
    problems, seen = [], set()
    for start in sorted(graph):
        for cycle in _cycles_from(graph, start):
            key = frozenset(cycle)
            if key in seen:
                continue
            seen.add(key)
            steps = [graph[a][b] for a, b in zip(cycle, cycle[1:] + cycle[:1])]
            problems.append("import cycle " + " -> ".join(cycle + cycle[:1]) + ": " + "; ".join(map(str, steps)))
    return problems


def _cycles_from(graph: dict[str, dict[str, Edge]], start: str) -> list[list[str]]:
    """Simple cycles through ``start`` whose other nodes sort after it (each cycle found once)."""
    found, path = [], [start]

    def walk(node: str) -> None:
        for nxt in sorted(graph.get(node, {})):
            if nxt == start:
                found.append(list(path))
            elif nxt > start and nxt not in path:
                path.append(nxt)
                walk(nxt)
                path.pop()

    walk(start)
    return found


def module_level_closure(edges: list[Edge], start: str) -> dict[str, Edge | None]:
    """Every module importing ``start`` loads (parent packages included), with the edge that first reached it."""
    by_module: dict[str, list[Edge]] = {}
    for e in edges:
        if not e.lazy:
            by_module.setdefault(e.module.name, []).append(e)
    reached: dict[str, Edge | None] = {}
    todo: list[tuple[str, Edge | None]] = [(start, None)]
    while todo:
        name, via = todo.pop()
        pieces = name.split(".")
        for i in range(1, len(pieces) + 1):  # importing a.b.c runs a, a.b, then a.b.c
            step = ".".join(pieces[:i])
            if step in reached:
                continue
            reached[step] = via
            if step.split(".")[0] == "edgecam":
                todo += [(e.target, e) for e in by_module.get(step, [])]
    return reached


def runtime_closure_imports(modules: dict[str, Module], edges: list[Edge]) -> list[str]:
    """Importing any runtime module loads nothing beyond the runtime's allow-list (no YAML, PIL, click)."""
    allowed_tops = STDLIB | THIRD_PARTY["runtime"].anywhere | {"edgecam"}
    problems = []
    for name in sorted(n for n in modules if part_of(n) == "runtime"):
        for loaded, via in sorted(module_level_closure(edges, name).items()):
            if loaded.split(".")[0] not in allowed_tops and loaded == loaded.split(".")[0]:
                problems.append(f"importing {name} loads {loaded} (last step: {via})")
    return problems


def oversized(modules: dict[str, Module]) -> list[str]:
    problems = []
    for module in modules.values():
        lines = module.source.count("\n") + (not module.source.endswith("\n") and bool(module.source))
        if lines > MAX_MODULE_LINES:
            problems.append(f"{module.path}: {lines} lines (split before {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(module.source, module.path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{module.path}:{node.lineno}: {node.name}() is {length} lines "
                                    f"(at most {MAX_FUNCTION_LINES})")
    return problems


# -- the tests on the real package -----------------------------------------------------------------
@pytest.fixture(scope="module")
def package() -> tuple[dict[str, Module], list[Edge]]:
    modules = load_package()
    return modules, import_edges(modules)


def report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(problems)


def test_the_analysis_sees_the_real_imports(package):
    """Non-vacuous: known edges of the real package are found, module-level or lazy as they are."""
    modules, edges = package
    found = {(e.module.name, e.target, e.lazy) for e in edges}
    assert ("edgecam.runtime.loop", "cv2", False) in found
    assert ("edgecam.evaluation.evaluate", "edgecam.plots", True) in found  # plots only when drawing
    assert any(m == "edgecam.cli" and t.startswith("edgecam.training") and lazy for m, t, lazy in found)
    assert any(m == "edgecam.runtime.litert" and t.startswith("ai_edge_litert") and lazy for m, t, lazy in found)
    assert {m.part for m in modules.values()} >= PARTS and len(edges) > 200


def test_every_import_form_is_resolved():
    probe = "\n".join([
        "import os, numpy as np",  # 1
        "import edgecam.config.camera",  # 2
        "from edgecam import files, __version__",  # 3
        "from . import capture",  # 4
        "from .sources import Source",  # 5
        "from .. import errors",  # 6
        "from ..modelfile.preprocess import fit_to_input",  # 7
        "class Later:",  # 8
        "    import json",  # 9: a class body runs at import
        "    def method(self):",  # 10
        "        from edgecam.serving import server",  # 11
        "async def fetch():",  # 12
        "    import cv2",  # 13
        "handler = lambda: __import__('x')",  # 14: not an import statement
        "",
    ])
    modules, edges = analyse({"edgecam/runtime/probe.py": probe})
    got = [(e.line, e.target, e.lazy) for e in edges if e.module.name == "edgecam.runtime.probe"]
    assert got == [
        (1, "os", False), (1, "numpy", False), (2, "edgecam.config.camera", False),
        (3, "edgecam.files", False), (3, "edgecam", False), (4, "edgecam.runtime.capture", False),
        (5, "edgecam.runtime.sources", False), (6, "edgecam.errors", False),
        (7, "edgecam.modelfile.preprocess", False), (9, "json", False), (11, "edgecam.serving.server", True),
        (13, "cv2", True),
    ]
    assert modules["edgecam.runtime.probe"].part == "runtime"


def test_every_part_is_declared(package):
    modules, _ = package
    problems = undeclared_parts(modules)
    assert not problems, report(problems, "undeclared parts")


def test_the_edge_side_never_imports_tensorflow_keras_matplotlib_or_training(package):
    _, edges = package
    problems = heavy_imports(edges)
    assert not problems, report(problems, "heavy imports")


def test_third_party_imports_stay_within_each_parts_allow_list(package):
    _, edges = package
    problems = third_party_imports(edges)
    assert not problems, report(problems, "third-party imports outside the allow-lists")


def test_internal_edges(package):
    _, edges = package
    problems = internal_imports(edges)
    assert not problems, report(problems, "forbidden internal imports")


def test_no_import_cycles_between_parts(package):
    _, edges = package
    problems = part_cycles(edges)
    assert not problems, report(problems, "cycles between parts (module-level imports)")


def test_importing_the_runtime_loads_only_what_a_pi_has(package):
    """Transitively, parent packages included: e.g. runtime → config.camera must not pull in YAML."""
    modules, edges = package
    problems = runtime_closure_imports(modules, edges)
    assert not problems, report(problems, "modules the runtime loads beyond its allow-list")
    loaded = module_level_closure(edges, "edgecam.config.camera")
    assert "yaml" not in loaded and "edgecam.config.loader" not in loaded, loaded


def test_no_module_or_function_is_too_long(package):
    modules, _ = package
    problems = oversized(modules)
    what = f"modules over {MAX_MODULE_LINES} or functions over {MAX_FUNCTION_LINES} lines"
    assert not problems, report(problems, what)


# -- proof that the rules can fail -----------------------------------------------------------------
def with_lines(source: str, *lines: str) -> tuple[str, int]:
    """``source`` with ``lines`` appended at module level; returns it and the first new line's number."""
    text = source if source.endswith("\n") else source + "\n"
    return text + "\n".join(lines) + "\n", text.count("\n") + 1


def analyse(overrides: dict[str, str]) -> tuple[dict[str, Module], list[Edge]]:
    modules = load_package(overrides=overrides)
    return modules, import_edges(modules)


def only_new(rule, baseline_edges, edges) -> list[str]:
    before = set(rule(baseline_edges))
    return [p for p in rule(edges) if p not in before]


def test_the_rules_flag_synthetic_forbidden_imports(package):
    modules, baseline = package
    loop = modules["edgecam.runtime.loop"].source
    tainted, line = with_lines(loop, "import tensorflow as tf", "def later():", "    from ..serving import server",
                               "    from edgecam.plots import confusion_matrix_png")
    _, edges = analyse({"edgecam/runtime/loop.py": tainted})

    heavy = only_new(heavy_imports, baseline, edges)
    assert heavy == [f"edgecam/runtime/loop.py:{line}: edgecam.runtime.loop -> tensorflow: the edge side (runtime) "
                     "must never import TensorFlow, Keras, matplotlib or edgecam.training"]
    internal = only_new(internal_imports, baseline, edges)
    assert internal == [f"edgecam/runtime/loop.py:{line + 2}: edgecam.runtime.loop -> edgecam.serving.server "
                        "(in a function): runtime must not import serving"]  # relative import resolved
    third = only_new(third_party_imports, baseline, edges)
    assert len(third) == 1 and third[0].startswith(f"edgecam/runtime/loop.py:{line}: "), third
    assert "tensorflow is not allowed in runtime" in third[0]
    # The lazy plots import is allowed on the edge side; a module-level one is not.
    eager_plots, at = with_lines(loop, "from edgecam.plots import confusion_matrix_png")
    _, edges = analyse({"edgecam/runtime/loop.py": eager_plots})
    assert only_new(heavy_imports, baseline, edges) == [
        f"edgecam/runtime/loop.py:{at}: edgecam.runtime.loop -> edgecam.plots: the edge side may import edgecam.plots "
        "only inside a function"]


def test_the_rules_flag_synthetic_config_cli_and_picamera_mistakes(package):
    modules, baseline = package
    camera, line = with_lines(modules["edgecam.config.camera"].source, "import yaml", "from . import loader")
    sources, at = with_lines(modules["edgecam.runtime.sources"].source, "from picamera2 import Picamera2",
                             "from edgecam.config.finetune import DataConfig")
    data, at_data = with_lines(modules["edgecam.data.split"].source, "import edgecam.cli")
    _, edges = analyse({"edgecam/config/camera.py": camera, "edgecam/runtime/sources.py": sources,
                        "edgecam/data/split.py": data})
    third = only_new(third_party_imports, baseline, edges)
    assert [p.split(": ")[0] for p in third] == [f"edgecam/config/camera.py:{line}", f"edgecam/runtime/sources.py:{at}"]
    assert "picamera2 may be imported only inside a function" in third[1]
    internal = only_new(internal_imports, baseline, edges)
    assert (f"edgecam/config/camera.py:{line + 1}: edgecam.config.camera -> edgecam.config.loader: "
            "edgecam.config.camera must not import the YAML loader (the runtime imports it)") in internal
    assert any(p.startswith(f"edgecam/runtime/sources.py:{at + 1}: ") and "only edgecam.config.camera" in p
               for p in internal)
    assert any(p.startswith(f"edgecam/data/split.py:{at_data}: ") and "may import edgecam.cli" in p for p in internal)
    # ... and transitively: the runtime now loads the YAML loader through config.finetune,
    assert any("loads yaml" in p for p in runtime_closure_imports(*analyse({"edgecam/runtime/sources.py": sources})))
    # or through the config package's __init__, which runs before edgecam.config.camera.
    modules_, edges = analyse({"edgecam/config/__init__.py": "from . import loader\n"})
    assert "edgecam.runtime.loop" in " ".join(p for p in runtime_closure_imports(modules_, edges) if "loads yaml" in p)
    assert "edgecam/config/__init__.py:1: edgecam.config -> edgecam.config.loader: edgecam.config must not import " \
           "the YAML loader (the runtime imports it)" in internal_imports(edges)


def test_the_rules_flag_a_synthetic_cycle_and_long_code(package):
    modules, baseline = package
    files_py, line = with_lines(modules["edgecam.files"].source, "from edgecam.data import split")
    long_function = "def long():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    modules_, edges = analyse({"edgecam/files.py": files_py, "edgecam/runtime/long.py": long_function + "\n" * 400})
    cycles = only_new(part_cycles, baseline, edges)
    assert any(c.startswith("import cycle data -> files -> data: ") and f"edgecam/files.py:{line}: " in c
               for c in cycles), cycles
    sizes = set(oversized(modules_)) - set(oversized(modules))
    assert sizes == {f"edgecam/runtime/long.py:1: long() is {MAX_FUNCTION_LINES + 1} lines "
                     f"(at most {MAX_FUNCTION_LINES})",
                     f"edgecam/runtime/long.py: {MAX_FUNCTION_LINES + 1 + 400} lines (split before {MAX_MODULE_LINES})"}
    _, edges = analyse({"edgecam/newpart.py": "import numpy\n"})
    assert undeclared_parts(load_package(overrides={"edgecam/newpart.py": ""})) == [
        "edgecam/newpart: not a declared part (add it to PARTS with its rules)"]
    assert any(p.startswith("edgecam/newpart.py:1: ") and "no third-party allow-list" in p
               for p in third_party_imports(edges))


def test_relative_imports_resolve_like_python():
    pkg = Module("edgecam.serving", "edgecam/serving/__init__.py", "")
    mod = Module("edgecam.serving.server", "edgecam/serving/server.py", "")
    assert resolve(mod, "slots", 1) == "edgecam.serving.slots"
    assert resolve(mod, None, 1) == "edgecam.serving"
    assert resolve(mod, "runtime.loop", 2) == "edgecam.runtime.loop"
    assert resolve(pkg, "slots", 1) == "edgecam.serving.slots"
    assert resolve(pkg, "errors", 2) == "edgecam.errors"
    with pytest.raises(ValueError):
        resolve(mod, "x", 3)


# -- repository paths --------------------------------------------------------------------------------
# An absolute folder that exists on one machine only: a user's home, a work or mount folder, or a
# fixed name in a shared temp folder (collides between users and concurrent runs). Generic system
# paths are fine (/dev/video0, /usr/bin/..., /etc/systemd/..., /proc/..., /var/lib/...), and so are
# /root alone (root's home everywhere), /home/pi/... (the Raspberry Pi OS user the README's systemd
# unit and the emulated Pi use) and mktemp templates (/tmp/name.XXXXXX). A path is only matched
# where one starts: not inside a URL or a relative path (host/home/..., tests/work/...).
_START = r"(?<![\w.~/$})-])"
MACHINE_PATH = re.compile(
    _START + r"/(?:"
    r"home/(?!pi(?![\w.-]))[\w.-]+"  # a user's home (other than the Pi's)
    r"|Users/[\w.-]+"  # macOS homes
    r"|root/[\w.-]+"  # something in root's home
    r"|(?:work|workspace|scratch)(?![\w.-])"  # a machine's work folders
    r"|(?:mnt|media|Volumes)/[\w.-]+"  # mounted disks
    r"|(?:var/)?tmp/(?![\w.-]*XXX)[\w.-]+"  # a fixed name in a shared temp folder
    r"|var/folders/|private/(?:var|tmp)/"  # macOS temp
    r")"
    r"|\b[A-Za-z]:\\\\?(?:Users|Documents and Settings)\\"  # Windows homes
)


def repository_files() -> list[Path]:
    """Files git tracks, plus new ones not yet added (but not ignored ones)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc})")
    return sorted({REPO / name for name in out.decode().split("\0") if name})


def machine_paths(text: str) -> list[tuple[int, str]]:
    return [(number, m.group(0)) for number, line in enumerate(text.splitlines(), 1)
            for m in MACHINE_PATH.finditer(line)]


def test_machine_path_rule():
    """What counts as one machine's folder (samples built from parts so this file has none)."""
    s = "/"
    bad = [s + "home/alice/data", f'Path("{s}work/shared/weights")', f"> {s}tmp/bench.log 2>&1", s + "root/.cache/x",
           s + "Users/bob/photos", s + "home/pixie/x", f"--root {s}var/tmp/edgecam-pi-root",
           f"PATH={s}usr/bin:{s}home/ci/bin", f"cd {s}work", f"{s}mnt/data/x", "C:" + "\\Users\\me",
           f"[log]({s}tmp/x.png)", s + "workspace/repo"]
    good = [s + "dev/video0", s + "usr/bin/python3", s + "etc/systemd/system/edgecam.service", s + "proc/cpuinfo",
            f"HOME={s}root", s + "home/pi/model.tflite", f"HOME={s}home/pi USER=pi",
            f"mktemp -d {s}tmp/edgecam-pi-work.XXXXXX", "cd " + s + "tmp", f"http://host{s}home/index.html",
            f"tests{s}work/data", "~/edgecam-venv", s + "api/status", s + "var/lib/dpkg", "``work/data``",
            f'"$root{s}home/x"', f"{s}homework/x"]
    assert [b for b in bad if not MACHINE_PATH.search(b)] == []
    assert [g for g in good if MACHINE_PATH.search(g)] == []


def test_no_machine_specific_paths_in_the_repository():
    offenders = []
    for path in repository_files():
        if not path.is_file():  # deleted in the work tree, not yet in the index
            continue
        data = path.read_bytes()
        if b"\0" in data:  # images, models
            continue
        for number, found in machine_paths(data.decode("utf-8", "replace")):
            offenders.append(f"{path.relative_to(REPO)}:{number}: {found}")
    assert not offenders, report(offenders, "machine-specific absolute paths (use a relative path, an option, "
                                 "tmp_path or tempfile)")
