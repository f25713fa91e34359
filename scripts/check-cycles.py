#!/usr/bin/env python3
"""Checks the import graph of each host binding: no cycle of imports may
span more than two files (doc/architecture.md). A file imports another
when it names a path into it: `crate::kamailio::x`, `super::x`,
`self::x`, including inside `use` groups (`use crate::kamailio::{a, b::c}`).

Usage: scripts/check-cycles.py [--graph] [binding ...]   (default: kamailio opensips)
Prints each binding's largest cycle and exits 1 when one is too large.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
MAX_CYCLE = 2


def module_of(path: Path) -> tuple:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    # String literals may hold "::" text; drop them (raw strings are rare here).
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand(prefix: list, rest: str, out: list):
    """Expands `a::b::{c, d::e}`-style text after `prefix` into paths."""
    rest = rest.strip()
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*(::)?\s*", rest)
    if rest.startswith("{"):
        depth, i = 0, 0
        for i, ch in enumerate(rest):
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 0:
                break
        inner = rest[1:i]
        depth, start = 0, 0
        for j, ch in enumerate(inner + ","):
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                if inner[start:j].strip():
                    expand(prefix, inner[start:j], out)
                start = j + 1
        return
    if not m:
        out.append(prefix)
        return
    name = m.group(1)
    if m.group(2):
        expand(prefix + [name], rest[m.end():], out)
    else:
        out.append(prefix + [name])


def references(text: str, here: tuple) -> list:
    paths = []
    for m in re.finditer(r"\b(crate|super|self)\s*::\s*", text):
        kind = m.group(1)
        # `self` is the module of this file (a.rs and a/mod.rs alike), and
        # `super` its parent.
        if kind == "crate":
            base = []
        elif kind == "self":
            base = list(here)
        else:
            base = list(here[:-1])
        found = []
        expand(base, text[m.end():m.end() + 2000], found)
        paths.extend(found)
    return paths


def graph(binding: str) -> dict:
    files = {}
    for path in sorted((ROOT / binding).rglob("*.rs")):
        files[module_of(path)] = path
    edges = {mod: set() for mod in files}
    for mod, path in files.items():
        text = strip_comments(path.read_text())
        for ref in references(text, mod):
            ref = tuple(ref)
            # The longest module that is a file and a prefix of the path.
            target = None
            for n in range(len(ref), 0, -1):
                if ref[:n] in files:
                    target = ref[:n]
                    break
            if target and target != mod:
                edges[mod].add(target)
    return edges


def strongly_connected(edges: dict) -> list:
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return result


def name(mod: tuple) -> str:
    return "/".join(mod[1:]) or mod[0]


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_graph = "--graph" in sys.argv
    failed = False
    for binding in args or ["kamailio", "opensips"]:
        edges = graph(binding)
        if show_graph:
            for mod in sorted(edges):
                print(f"{name(mod)} -> {', '.join(sorted(name(t) for t in edges[mod]))}")
        cycles = [c for c in strongly_connected(edges) if len(c) > 1]
        largest = max((len(c) for c in cycles), default=1)
        too_big = [c for c in cycles if len(c) > MAX_CYCLE]
        print(f"{binding}: {len(edges)} files, largest import cycle {largest} file(s)"
              + (f", {len(too_big)} over {MAX_CYCLE}" if too_big else ""))
        for c in too_big:
            print("  cycle: " + ", ".join(name(m) for m in c))
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
