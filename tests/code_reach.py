"""What code each Lambda function can run: a static reference graph over `paywalls` and the function's
app.py, for the least-privilege checks of test_template.py (moto enforces no IAM, so a missing grant
would only show in AWS).

Nodes are top-level functions and classes (a class with all its methods) plus each module's top-level
statements. An edge is any reference, called or not: `module.name` through `from paywalls import
module`, a bare name defined in the same module, or one imported with `from paywalls.module import
name`. Every node of app.py is a root (each route is reachable over HTTP), and a reached module's
top-level statements are reached too (they run at import), with its route functions (`@router.get`
and the like register them at import: a router the app includes is served).

It over-approximates (a reference on a branch that never runs still counts), which errs towards
granting; it misses only calls it cannot name statically (getattr, instance methods of classes that
are never named), which this code base does not use for AWS calls."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared" / "paywalls"
MODULE_LEVEL = "<module>"

Node = tuple[str, str]  # (module, top-level name or MODULE_LEVEL)


@dataclass
class _Module:
    name: str
    source: str
    defs: dict[str, ast.AST] = field(default_factory=dict)  # top-level def/class name -> node
    statements: list[ast.stmt] = field(default_factory=list)  # everything else at top level
    modules: dict[str, str] = field(default_factory=dict)  # local alias -> paywalls module
    names: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)
    routes: list[str] = field(default_factory=list)  # top-level defs decorated as routes (`@router.get(...)`)


def _parse(name: str, path: Path) -> _Module:
    source = path.read_text()
    module = _Module(name, source)
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            module.defs[statement.name] = statement
            if any(_is_route(d) for d in getattr(statement, "decorator_list", [])):
                module.routes.append(statement.name)
            continue
        module.statements.append(statement)
        if isinstance(statement, ast.ImportFrom) and statement.module == "paywalls":
            for alias in statement.names:
                module.modules[alias.asname or alias.name] = alias.name
        elif isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith("paywalls."):
            target = (statement.module or "").split(".", 1)[1]
            for alias in statement.names:
                # `from paywalls.sub import module` (a subpackage's module) or `from paywalls.m import name`
                if (PACKAGE / target.replace(".", "/") / f"{alias.name}.py").exists():
                    module.modules[alias.asname or alias.name] = f"{target}.{alias.name}"
                else:
                    module.names[alias.asname or alias.name] = (target, alias.name)
        elif isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.name.startswith("paywalls.") and alias.asname:
                    module.modules[alias.asname] = alias.name.split(".", 1)[1]
    return module


_ROUTE_DECORATORS = frozenset({"get", "post", "put", "patch", "delete", "api_route", "route"})


def _is_route(decorator: ast.expr) -> bool:
    """`@router.get("/path")` and the like: registered on the router when the module is imported, so
    each is reachable over HTTP as soon as the module is (the wallet function's routers live in the
    package, not in its app.py)."""
    return (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr in _ROUTE_DECORATORS
    )


class CodeGraph:
    def __init__(self) -> None:
        # Subpackages' modules by dotted name relative to the package (`analytics.rollups`).
        names = {path: ".".join(path.relative_to(PACKAGE).with_suffix("").parts) for path in PACKAGE.rglob("*.py")}
        self.modules = {name: _parse(name, path) for path, name in sorted(names.items()) if "__" not in name}

    def _resolve(self, module: str, name: str, seen: frozenset[Node] = frozenset()) -> Node | None:
        """(module, name) as a node: a def, a re-export followed to its def, else the module's top level."""
        info = self.modules.get(module)
        if info is None or (module, name) in seen:
            return None
        if name in info.defs:
            return (module, name)
        if name in info.names:
            return self._resolve(*info.names[name], seen | {(module, name)})
        if name in info.modules:
            return (info.modules[name], MODULE_LEVEL)
        return (module, MODULE_LEVEL)

    def _references(self, module: _Module, nodes: list[ast.AST]) -> set[Node]:
        found: set[Node] = set()
        for tree in nodes:
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    target = module.modules.get(node.value.id)
                    if target:
                        resolved = self._resolve(target, node.attr)
                        if resolved:
                            found.add(resolved)
                elif isinstance(node, ast.Name):
                    if node.id in module.defs:
                        found.add((module.name, node.id))
                    elif node.id in module.names:
                        resolved = self._resolve(*module.names[node.id])
                        if resolved:
                            found.add(resolved)
                    elif node.id in module.modules:
                        found.add((module.modules[node.id], MODULE_LEVEL))
        return found

    def _body(self, node: Node) -> list[ast.AST]:
        module = self.modules[node[0]]
        return list(module.statements) if node[1] == MODULE_LEVEL else [module.defs[node[1]]]

    def source_of(self, node: Node) -> str:
        module = self.modules[node[0]]
        return "\n".join(ast.get_source_segment(module.source, part) or "" for part in self._body(node))

    def reachable_sources(self, app_path: Path) -> dict[Node, str]:
        """The source text of every node the function whose handler module is `app_path` can run (its
        own app module is `__app__`)."""
        app = _parse("__app__", app_path)
        self.modules["__app__"] = app
        try:
            pending: list[Node] = [("__app__", MODULE_LEVEL), *(("__app__", name) for name in app.defs)]
            reached: set[Node] = set()
            while pending:
                node = pending.pop()
                if node in reached or node[0] not in self.modules:
                    continue
                reached.add(node)
                pending.append((node[0], MODULE_LEVEL))  # a reached module's top level runs at import
                if node[1] == MODULE_LEVEL:  # ... and registers its routes (a router included by an app)
                    pending.extend((node[0], name) for name in self.modules[node[0]].routes)
                pending.extend(self._references(self.modules[node[0]], self._body(node)))
            return {node: self.source_of(node) for node in reached}
        finally:
            del self.modules["__app__"]
