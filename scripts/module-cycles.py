#!/usr/bin/env python3
"""Module cycles in a crate: which of its modules import each other, directly or round about.

Usage: scripts/module-cycles.py crates/producer/src [more src dirs...]

Each file is a module (lib.rs/main.rs the root, a/mod.rs and a.rs `a`, a/b.rs `a::b`). An edge
A -> B is a path in A's code (not its comments) that names module B or an item in it:
`crate::b::…`, `super::…`, `self::b::…`, or `b::…` for a child `b` of A. A `mod` declaration is
not an edge, nor is a file's use of itself. Strongly connected components of more than one
module are the cycles; each is printed with the edges inside it. Exit status 1 when any exists.
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+|[a-z_][a-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code(text: str) -> str:
    """The text without comments (line comments and /* */ blocks) and string literals."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def edges(src: Path):
    files = {module_of(src, f): f for f in src.rglob("*.rs") if f.name != "main.rs" or f.parent == src and not (src / "lib.rs").exists()}
    modules = set(files)
    graph = {m: {} for m in modules}
    for module, file in files.items():
        # A file's own directory scope: a/mod.rs and a.rs both resolve children as a::child.
        for match in PATH.finditer(code(file.read_text())):
            segments = match.group(1).split("::")
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
            # The longest prefix that is a module of this crate.
            target = None
            for n in range(len(rest), -1, -1):
                candidate = base + tuple(rest[:n])
                if candidate in modules and (n > 0 or head in ("crate", "super")):
                    target = candidate
                    break
            if target is None or target == module:
                continue
            graph[module].setdefault(target, match.group(1))
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
        print(f"{arg}: {len(graph)} modules, {sum(len(e) for e in graph.values())} edges, {len(cycles)} cycle(s)")
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
