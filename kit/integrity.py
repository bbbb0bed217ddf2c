"""What of the kit a notebook changed while it ran.

A notebook that replaces a kit function or method (`kit.Trainer.test_epoch = ...`) or one of its settings
(`kit.train.CHECK_EVERY = 1`) can make its run report what the kit did not compute. `import kit` notes the code of
every function and method of the kit's modules and the value of every setting (a module's UPPER_CASE names).
`changed()` names what is no longer as noted, or was not when a Trainer looked (as each epoch starts and ends, so a
change undone before the result still counts), and a Trainer method replaced on the instance or by a subclass.
`setup.result` writes those names into the record, and `kit check` (and so `kit grade`, on its rerun) refuses a
run made with a changed kit. Code is compared, not objects, so a module reloaded unchanged is not a change.
A notebook that replaces this very check is beyond it at run time; `assigned` reads the notebook's code instead:
an assignment to anything reached from the kit (`kit.integrity.look = ...`, `setattr(kit.Trainer, ...)`) is
named whether it ran or not, and `kit check` and `kit grade` refuse it too (sanity/kit-assigned). Code built
from strings (exec) is beyond both: `kit grade` reruns a submission's code, and a TA reads it.
"""
from __future__ import annotations

import ast
import inspect
import sys
from types import FunctionType

PLAIN = (int, float, str, bool, type(None))
_noted: dict[str, dict[str, object]] = {}  # module -> {name or Class.name: fingerprint}
_seen: set[str] = set()  # changes a look found
_MISSING = object()


def _code(obj):
    """What a function, method or property runs (decorators such as torch.no_grad unwrapped); None where nothing."""
    if isinstance(obj, property):
        return tuple(_code(f) for f in (obj.fget, obj.fset, obj.fdel))
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    obj = inspect.unwrap(obj) if callable(obj) else obj
    return obj.__code__ if isinstance(obj, FunctionType) else None


def _plain(value) -> bool:
    """A setting's value made of numbers, strings and flags (tuples and dicts of them too): compared by value."""
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, (tuple, frozenset)):
        return all(_plain(v) for v in value)
    return isinstance(value, PLAIN)


def _fingerprints(module) -> dict[str, object]:
    out = {}
    for name, obj in vars(module).items():
        home = getattr(obj, "__module__", None) or ""
        if isinstance(obj, type) and home == module.__name__:
            out[name] = ("class", home, obj.__qualname__)
            out.update({f"{name}.{k}": c for k, v in vars(obj).items() if (c := _code(v)) is not None})
        elif (isinstance(obj, type) or callable(obj)) and home.startswith("kit.") and home != module.__name__:
            out[name] = ("from", home, getattr(obj, "__qualname__", name))  # `kit.Trainer`: the one in kit.train
        elif (c := _code(obj)) is not None and home == module.__name__:
            out[name] = c
        elif name.isupper() and _plain(obj):
            out[name] = dict(obj) if isinstance(obj, dict) else obj
    return out


def _modules() -> dict:
    return {n: m for n, m in list(sys.modules.items()) if (n == "kit" or n.startswith("kit.")) and m is not None}


def note() -> None:
    """Note the kit as imported (kit/__init__ calls it; a module imported later is noted at the next call)."""
    for name, module in _modules().items():
        _noted.setdefault(name, _fingerprints(module))


def _now() -> list[str]:
    out = []
    for name, module in _modules().items():
        if name not in _noted:
            continue
        now = _fingerprints(module)
        out += [f"{name}.{k}" for k, v in _noted[name].items() if now.get(k, _MISSING) != v]
        out += [f"{name}.{k}" for k in now.keys() - _noted[name].keys() if "." in k]  # a method added to a class
    return out


def look(trainer=None) -> None:
    """Remember what is changed now: the Trainer looks as each epoch starts and ends, so a change undone before the
    result is recorded is still named. Given the trainer, also a method of the kit's Trainer that this one does not
    run as noted: replaced on the instance, or overridden by a subclass (the Trainer is the measuring instrument; a
    lesson extends it with callbacks)."""
    _seen.update(_now())
    if trainer is not None:
        from kit.train import Trainer

        home, prefix = Trainer.__module__, Trainer.__qualname__ + "."
        _seen.update(f"{home}.{key}" for key, code in _noted.get(home, {}).items() if key.startswith(prefix) and
                     _code(inspect.getattr_static(trainer, key.removeprefix(prefix), None)) != code)


def forget() -> None:
    """A new notebook run starts (kit.setup): changes seen before it are not its own."""
    _seen.clear()


def changed() -> list[str]:
    """The kit's functions, methods and settings that are not, or were not while a Trainer trained, what `note`
    saw, as dotted names."""
    return sorted(_seen.union(_now()))


def assigned(cells: list[str]) -> list[tuple[int, str]]:
    """What a notebook's code cells assign to, delete from or setattr() on, reached from a name bound to the kit
    (`import kit`, `import kit.train as t`, `from kit import Trainer`, `T = kit.Trainer`): (cell index, the
    target as written), as [(4, 'kit.train.CHECK_EVERY')]. Read in order, cell after cell: a name bound again to
    something else (`setup = kit.setup()`) is the notebook's own from there on."""
    reader = _Reader()
    for index, source in enumerate(cells):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        reader.cell = index
        reader.visit(tree)
    return reader.found


def _root(node):
    """The name an attribute or item chain starts from (`kit` of kit.train.X['y']); None for anything else."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Reader(ast.NodeVisitor):
    def __init__(self):
        self.kit: set[str] = set()  # names bound to the kit or to something of it, now
        self.found: list[tuple[int, str]] = []
        self.cell = 0

    def _bind(self, name: str, value) -> None:
        """A name bound to a chain of the kit (no call: a call makes something new) is the kit's; else not."""
        if value is not None and not isinstance(value, ast.Call) and _root(value) in self.kit:
            self.kit.add(name)
        else:
            self.kit.discard(name)

    def _target(self, target, value=None) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._target(t)
        elif isinstance(target, ast.Starred):
            self._target(target.value)
        elif isinstance(target, ast.Name):
            self._bind(target.id, value)
        elif isinstance(target, (ast.Attribute, ast.Subscript)) and _root(target) in self.kit:
            self.found.append((self.cell, ast.unparse(target)))

    def visit_Import(self, node):
        for a in node.names:
            top = a.name.split(".")[0]
            name = a.asname or top
            (self.kit.add if top == "kit" else self.kit.discard)(name)

    def visit_ImportFrom(self, node):
        ours = (node.module or "").split(".")[0] == "kit" and not node.level
        for a in node.names:
            if a.name == "*":  # every public name of that module
                module = sys.modules.get(node.module or "")
                names = {n for n in dir(module) if not n.startswith("_")} if module else set()
                self.kit = self.kit | names if ours else self.kit - names
            else:
                (self.kit.add if ours else self.kit.discard)(a.asname or a.name)

    def visit_Assign(self, node):
        self.visit(node.value)
        for target in node.targets:
            self._target(target, node.value)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
        self._target(node.target, node.value)

    def visit_AugAssign(self, node):
        self.visit(node.value)
        if not isinstance(node.target, ast.Name):
            self._target(node.target)

    def visit_NamedExpr(self, node):
        self.visit(node.value)
        self._target(node.target, node.value)

    def visit_Delete(self, node):
        for target in node.targets:
            self._target(target)

    def visit_For(self, node):
        self.visit(node.iter)
        self._target(node.target)
        for statement in node.body + node.orelse:
            self.visit(statement)

    def visit_withitem(self, node):
        self.visit(node.context_expr)
        if node.optional_vars is not None:
            self._target(node.optional_vars)

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        self.kit.discard(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = visit_FunctionDef  # class Trainer(kit.Trainer): the notebook's own subclass

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and node.args \
                and _root(node.args[0]) in self.kit:
            name = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else "?"
            self.found.append((self.cell, f"{ast.unparse(node.args[0])}.{name}"))
