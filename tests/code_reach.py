"""What code each Lambda function can run: a static reference graph over `paywalls` and the function's
app.py, for the least-privilege checks of test_template.py (moto enforces no IAM, so a missing grant
would only show in AWS).

Nodes are top-level functions and classes (a class with all its methods), functions made from a
store rule (`hold = store.blocking(_hold)`), plus each module's top-level statements. An edge is any
reference, called or not: `module.name` through `from paywalls import module`, a bare name defined in
the same module, or one imported with `from paywalls.module import name`. Every node of app.py is a
root (each route is reachable over HTTP), and a reached module's top-level statements are reached too
(they run at import), with its route functions (`@router.get` and the like register them at import:
a router the app includes is served).

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


def _parse(name: str, path: Path, known: frozenset[str] = frozenset()) -> _Module:
    """`known`: the package's module names (dotted below `paywalls`, e.g. `events.outbox`), so that
    `from paywalls.events import outbox` is told apart from importing a name of `events`."""
    source = path.read_text()
    module = _Module(name, source)
    tree = ast.parse(source)
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            module.defs[statement.name] = statement
            if any(_is_route(d) for d in getattr(statement, "decorator_list", [])):
                module.routes.append(statement.name)
            continue
        if (wrapped := _driven_rule(statement)) is not None:
            module.defs[wrapped] = statement
            continue
        module.statements.append(statement)
    # Imports anywhere (a function may import lazily): one alias map per module, an over-approximation.
    for statement in ast.walk(tree):
        if isinstance(statement, ast.ImportFrom) and (statement.module or "").split(".")[0] == "paywalls":
            package = (statement.module or "").partition(".")[2]
            for alias in statement.names:
                dotted = f"{package}.{alias.name}" if package else alias.name
                if not package or dotted in known:
                    module.modules[alias.asname or alias.name] = dotted
                else:
                    module.names[alias.asname or alias.name] = (package, alias.name)
        elif isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.name.startswith("paywalls.") and alias.asname:
                    module.modules[alias.asname] = alias.name.split(".", 1)[1]
    return module


_RULE_DRIVERS = frozenset({"blocking", "awaited"})


def _driven_rule(statement: ast.stmt) -> str | None:
    """`hold = store.blocking(_hold)`: a function made at import from a store rule (store.py "Steps");
    like a def, what it runs is reached only when its name is, not by importing the module."""
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Attribute)
        and statement.value.func.attr in _RULE_DRIVERS
    ):
        return statement.targets[0].id
    return None


def _is_docstring(statement: ast.AST) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _is_package(dotted: str) -> bool:
    """`paywalls` or one of its subpackages (a folder), as opposed to a module."""
    if dotted != "paywalls" and not dotted.startswith("paywalls."):
        return False
    return (PACKAGE.parent / dotted.replace(".", "/")).is_dir()


def _module_name(path: Path) -> str:
    """shared/paywalls/billing/ledger.py -> "billing.ledger" (how the graph names modules)."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


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


def _dotted(path: Path) -> str:
    """shared/paywalls/events/outbox.py -> "events.outbox"."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


class CodeGraph:
    def __init__(self) -> None:
        paths = {_dotted(path): path for path in sorted(PACKAGE.rglob("*.py")) if path.name != "__init__.py"}
        self.known = frozenset(paths)
        self.modules = {name: _parse(name, path, self.known) for name, path in paths.items()}

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
        """The code of a node, without the module's docstring: prose that names an API path or a
        secret's name runs nothing."""
        module = self.modules[node[0]]
        return "\n".join(
            ast.get_source_segment(module.source, part) or "" for part in self._body(node) if not _is_docstring(part)
        )

    def reachable_sources(self, app_path: Path) -> dict[Node, str]:
        """The source text of every node the function whose handler module is `app_path` can run (its
        own app module is `__app__`)."""
        app = _parse("__app__", app_path, self.known)
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
