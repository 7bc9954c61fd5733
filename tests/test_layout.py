"""The package's rooms and who may import whom, read from the source with ast."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "krita_alac")


def py_files(folder):
    for d, _, names in os.walk(folder):
        if "__pycache__" in d or "node_modules" in d:
            continue
        for n in names:
            if n.endswith(".py"):
                yield os.path.join(d, n)


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-9] if rel.endswith(".__init__") else rel


def imports(path, top_level_only=False):
    """Absolute module names imported by `path` (relative imports resolved)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    pkg = module_name(path)
    if not path.endswith("__init__.py"):
        pkg = pkg.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


def test_only_the_plugin_room_imports_krita_or_qt():
    offenders = []
    for p in py_files(ROOT):
        if "/.venv/" in p or "/tests/" in p:
            continue
        rel = os.path.relpath(p, ROOT)
        if rel.startswith(os.path.join("krita_alac", "plugin")) or rel == os.path.join("krita_alac", "__init__.py"):
            continue
        for m in imports(p):
            if m.split(".")[0] in ("krita", "PyQt5"):
                offenders.append((rel, m))
    assert offenders == []


def test_the_engine_imports_torch_code_only_inside_functions():
    for p in py_files(os.path.join(PKG, "engine")):
        top = imports(p, top_level_only=True)
        assert not [m for m in top if m.startswith(("krita_alac.convert", "krita_alac.plugin", "torch"))], p


def test_the_plugin_uses_only_plain_python_engine_modules():
    """Krita's Python may lack numpy: the plugin reads only the engine's plain modules."""
    allowed = {"krita_alac.engine.errors", "krita_alac.engine.limits", "krita_alac.engine.store"}
    for p in py_files(os.path.join(PKG, "plugin")):
        used = {m for m in imports(p) if m.startswith("krita_alac.engine.")}
        used = {m if m in allowed else m.rsplit(".", 1)[0] for m in used}
        assert used <= allowed | {"krita_alac.engine"}, (p, used - allowed)
        for m in imports(p):
            assert m.split(".")[0] not in ("numpy", "scipy", "onnxruntime", "torch"), (p, m)


def test_training_does_not_import_the_benchmark():
    for p in py_files(os.path.join(ROOT, "training")):
        assert not [m for m in imports(p) if m == "bench" or m.startswith("bench.")], p


def test_no_import_circle_between_modules():
    mods = {module_name(p): p for folder in ("krita_alac", "training", "bench", "model_download", "artdata")
            if os.path.isdir(os.path.join(ROOT, folder)) for p in py_files(os.path.join(ROOT, folder))}
    graph = {}
    for name, p in mods.items():
        # Every import counts, deferred ones too: a circle hidden in a function is still a circle.
        # Importing one's own parent package (for __version__) is how Python reaches
        # a sibling, not a dependency of code on code.
        graph[name] = {m for m in imports(p) if m in mods and m != name and not name.startswith(m + ".")}
    seen, stack, circles = set(), [], []

    def visit(n):
        if n in stack:
            circles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for m in sorted(graph[n]):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert circles == []


def test_no_large_tracked_file_outside_the_bundled_models():
    import subprocess
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    big = [f for f in files if os.path.isfile(os.path.join(ROOT, f))
           and os.path.getsize(os.path.join(ROOT, f)) > 1_000_000 and not f.startswith("krita_alac/models/")]
    assert big == []
