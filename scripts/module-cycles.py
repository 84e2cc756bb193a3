#!/usr/bin/env python3
"""Module cycles in a crate: which of its modules import each other, directly or round about.

Usage: scripts/module-cycles.py crates/producer/src [more src dirs...]

Each file is a module (lib.rs the root, a/mod.rs and a.rs `a`, a/b.rs `a::b`). An edge A -> B
is a path in A's code that names module B or an item defined in it: `crate::b::…`, `super::…`,
`self::b::…`, or `b::…` for a child `b` of A, `use` trees with braces counting as the paths they
expand to. Not edges: comments and strings, `#[cfg(test)]` modules (a file's tests may use their
parent), `mod` declarations, and `pub use` re-exports themselves: a path through a re-export is
an edge to the module that defines the item, so a facade such as lib.rs's `pub use` list ties
nothing together. Strongly connected components of more than one module are the cycles; each is
printed with the edges inside it. Exit status 1 when any exists.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH = re.compile(rf"\b((?:crate|super|self)(?:::{IDENT})+|[a-z_][a-z0-9_]*(?:::{IDENT})+)")
USE = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")


def module_of(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def code(text: str) -> str:
    """The text without its test module, comments and string literals."""
    test = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    if test:
        text = text[: test.start()]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r(#*)".*?"\1', '""', text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"'(?:\\.|[^'\\])'", "' '", text)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def expand(tree: str) -> list:
    """`a::{b, c::{d, e as f}}` as the (path, name) pairs it imports."""
    tree = re.sub(r"\s+", " ", tree).strip()
    if "{" not in tree:
        path, _, alias = tree.partition(" as ")
        path = path.replace(" ", "")
        return [(path, alias.strip() or path.split("::")[-1])]
    head, _, rest = tree.partition("{")
    head = head.replace(" ", "")
    inner = rest[: rest.rindex("}")]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    out = []
    for part in parts:
        if not part.strip():
            continue
        for path, name in expand(part):
            if path == "self":
                out.append((head.rstrip(":"), head.rstrip(":").split("::")[-1]))
            else:
                out.append((head + path, name))
    return out


def resolve(module, path, modules):
    """The module `path` (as written in `module`) leads to, and the item named in it, if any."""
    segments = [seg for seg in path.split("::") if seg]
    head, rest = segments[0], segments[1:]
    if head == "crate":
        base = ()
    elif head == "super":
        base = module[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base = module
    else:
        base, rest = module, segments
    for n in range(len(rest), -1, -1):
        candidate = base + tuple(rest[:n])
        if candidate in modules and (n > 0 or head in ("crate", "super", "self")):
            item = rest[n] if n < len(rest) else None
            return candidate, item
    return None, None


def edges(src: Path):
    files = {module_of(src, f): f for f in src.rglob("*.rs") if f.name != "main.rs"}
    if not (src / "lib.rs").exists() and (src / "main.rs").exists():
        files[()] = src / "main.rs"
    modules = set(files)
    texts = {m: code(f.read_text()) for m, f in files.items()}
    # Re-exports: module -> name -> the path it re-exports (resolved from that module).
    reexports = {m: {} for m in modules}
    for module, text in texts.items():
        for vis, tree in USE.findall(text):
            if vis:
                for path, name in expand(tree):
                    reexports[module][name] = path

    def defining(module, path, seen=()):
        target, item = resolve(module, path, modules)
        if target is None:
            return None
        via = reexports[target].get(item) if item else None
        if via and (target, item) not in seen:
            return defining(target, via, seen + ((target, item),)) or target
        return target

    graph = {m: {} for m in modules}
    for module, text in texts.items():
        used = [path for vis, tree in USE.findall(text) if not vis for path, _ in expand(tree)]
        used += [m.group(1) for m in PATH.finditer(USE.sub("", text))]
        for path in used:
            path = path.rstrip(":*").rstrip(":")
            if not path:
                continue
            target = defining(module, path)
            if target is None or target == module:
                continue
            graph[module].setdefault(target, path)
    return graph


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def name(module) -> str:
    return "::".join(module) or "crate"


def main() -> int:
    found = False
    for arg in sys.argv[1:] or ["."]:
        graph = edges(Path(arg))
        cycles = [sorted(c) for c in sccs(graph) if len(c) > 1]
        edge_count = sum(len(e) for e in graph.values())
        print(f"{arg}: {len(graph)} modules, {edge_count} edges, {len(cycles)} cycle(s)")
        for comp in cycles:
            found = True
            members = set(comp)
            print("  cycle: " + ", ".join(name(m) for m in comp))
            for m in comp:
                for target, via in sorted(graph[m].items()):
                    if target in members:
                        print(f"    {name(m)} -> {name(target)}  ({via})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
