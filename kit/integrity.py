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
    in any of them (`import kit`, `import kit.train as t`, `from kit import Trainer`): (cell index, the target as
    written), as [(4, 'kit.train.CHECK_EVERY')]."""
    trees = []
    for source in cells:
        try:
            trees.append(ast.parse(source))
        except SyntaxError:
            trees.append(ast.Module(body=[], type_ignores=[]))
    kit_names = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.Import):
            kit_names |= {(a.asname or a.name.split(".")[0]) for a in node.names if a.name.split(".")[0] == "kit"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kit" and not node.level:
            kit_names |= {a.asname or a.name for a in node.names}

    def root(node):  # the name an attribute or item chain starts from
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None

    found = []
    for index, tree in enumerate(trees):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("setattr", "delattr") and node.args and root(node.args[0]) in kit_names:
                name = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else "?"
                found.append((index, f"{ast.unparse(node.args[0])}.{name}"))
                continue
            if isinstance(node, ast.Assign):
                targets = [t for target in node.targets
                           for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target])]
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif isinstance(node, ast.Delete):
                targets = node.targets
            else:
                continue
            found += [(index, ast.unparse(t)) for t in targets
                      if isinstance(t, (ast.Attribute, ast.Subscript)) and root(t) in kit_names]
    return found
