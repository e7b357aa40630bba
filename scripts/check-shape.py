#!/usr/bin/env python3
"""The shape of src/, checked: no import circle of more than two files, no function
longer than 80 lines.

Imports are read as ARCHITECTURE.md describes them: `use crate::...`, `crate::x::`
paths in code, `super::` and `self::` paths; a `pub use` (a re-export) is left out,
and a name the crate root re-exports (`crate::Event`) counts as an import of the file
that defines it. Comments (doc comments included) are ignored, and so are `#[cfg(test)]`
modules, whose imports are the tests', not the code's.

    scripts/check-shape.py            # check; exit 1 on a circle or a long function
    scripts/check-shape.py --graph    # also print every file's imports
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_FN_LINES = 80


def strip(text):
    """Removes comments and string/char literals, keeping line numbers."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"' or (c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            m = re.match(r'r(#*)"', text[i:i + 10])
            if c == "r" and m:
                end = '"' + m.group(1)
                j = text.find(end, i + len(m.group(0)))
                j = n if j < 0 else j + len(end)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j += 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def closing_brace(code, start):
    """The index of the `}` that closes the `{` at `start`."""
    depth, j = 0, start
    while j < len(code):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                break
        j += 1
    return j


def drop_test_modules(code):
    """Blanks `#[cfg(test)] mod x { ... }` bodies (keeping newlines)."""
    res = code
    for m in list(re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", code)):
        j = closing_brace(code, m.end() - 1)
        blank = "".join(ch if ch == "\n" else " " for ch in code[m.start():j + 1])
        res = res[:m.start()] + blank + res[j + 1:]
    return res


def inline_modules(code):
    """(start, end, name) of every inline `mod name { ... }` block."""
    blocks = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
        blocks.append((m.start(), closing_brace(code, m.end() - 1), m.group(1)))
    return blocks


def scope_at(blocks, pos):
    return tuple(name for start, end, name in blocks if start < pos < end)


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def files():
    for d, _, fs in os.walk(ROOT):
        for f in sorted(fs):
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def expand_use(tree):
    """`a::{b, c::{d}}` -> ['a::b', 'a::c::d']"""
    tree = re.sub(r"\s+as\s+", "@", tree)
    tree = re.sub(r"\s+", "", tree)
    m = re.search(r"\{", tree)
    if not m:
        return [tree]
    prefix = tree[:m.start()]
    body = tree[m.end():tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [p for part in parts if part for p in expand_use(prefix + part)]


def main():
    graph_only = "--graph" in sys.argv
    modules = {module_of(p): p for p in files()}
    lib = strip(open(os.path.join(ROOT, "lib.rs")).read())
    # Names the crate root re-exports: crate::Name -> the module that defines it.
    root_names = {}
    for m in re.finditer(r"pub\s+use\s+([^;]+);", lib):
        for path in expand_use(m.group(1)):
            segs = [s for s in path.split("::") if s and s != "crate"]
            name = segs[-1].split("@")[-1]
            root_names[name] = tuple(segs[:-1])

    def resolve(cur, segs):
        """The module file a path names (the longest module prefix)."""
        if not segs:
            return None
        if segs[0] == "crate":
            base, rest = (), segs[1:]
            if rest and rest[0] in root_names and tuple(rest[:1]) not in modules:
                base, rest = root_names[rest[0]], rest[1:]
        elif segs[0] in ("super", "self"):
            base, rest = cur, segs
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
        else:
            return None
        full = tuple(base) + tuple(rest)
        if segs[0] == "crate" and rest and rest[0] in root_names and full not in modules and full[:1] not in modules:
            full = root_names[rest[0]] + tuple(rest[1:])
        for k in range(len(full), -1, -1):
            if full[:k] in modules:
                return full[:k]
        return None

    edges = {}
    long_fns = []
    for mod, path in modules.items():
        raw = open(path).read()
        code = drop_test_modules(strip(raw))
        deps = set()
        blocks = inline_modules(code)
        for m in re.finditer(r"(?<![\w:])(pub(\([^)]*\))?\s+)?use\s+([^;]+);", code):
            if m.group(1) and not m.group(2):
                continue  # a public re-export
            for p in expand_use(m.group(3)):
                segs = [s.split("@")[0] for s in p.split("::")]
                if segs[0] in ("crate", "super", "self"):
                    deps.add(resolve(mod + scope_at(blocks, m.start()), segs))
        no_uses = re.sub(r"(?<![\w:])(pub(\([^)]*\))?\s+)?use\s+[^;]+;", lambda u: " " * len(u.group(0)), code)
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", no_uses):
            segs = m.group(1).split("::")
            if segs[0] == "self" and len(segs) == 2:
                continue
            deps.add(resolve(mod + scope_at(blocks, m.start()), segs))
        # A child module declared here (`mod x;`) and used by a bare `x::` path.
        for m in re.finditer(r"(?<![\w:])mod\s+(\w+)\s*;", code):
            child = mod + (m.group(1),)
            if child in modules and re.search(r"(?<![\w:])" + m.group(1) + r"::", no_uses):
                deps.add(child)
        deps.discard(None)
        deps.discard(mod)
        # A module declared here is not an import of it; only paths into it are.
        edges[mod] = deps
        # Function lengths, from `fn name` to its closing brace.
        lines = code.split("\n")
        for i, line in enumerate(lines):
            fm = re.search(r"\bfn\s+(\w+)", line)
            if not fm:
                continue
            depth, started, j = 0, False, i
            while j < len(lines):
                seg = lines[j] if j != i else line[fm.start():]
                for ch in seg:
                    if ch == "{":
                        depth += 1
                        started = True
                    elif ch == "}":
                        depth -= 1
                    elif ch == ";" and not started and depth == 0:
                        j = len(lines) + 1
                        break
                if started and depth == 0:
                    break
                j += 1
            if started and j < len(lines):
                n = j - i + 1
                if n > MAX_FN_LINES:
                    long_fns.append((os.path.relpath(path, ROOT), i + 1, fm.group(1), n))

    name = lambda m: "/".join(m) or "lib"
    if graph_only:
        for mod in sorted(edges):
            print(f"{name(mod)} -> {', '.join(sorted(name(d) for d in edges[mod]))}")

    # Strongly connected components (Tarjan).
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
            sccs.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    bad = False
    for comp in sccs:
        if len(comp) > 2:
            bad = True
            print(f"import circle of {len(comp)} files: {', '.join(sorted(name(m) for m in comp))}")
    for f, line, fn, n in long_fns:
        bad = True
        print(f"src/{f}:{line}: fn {fn} is {n} lines (at most {MAX_FN_LINES})")
    if bad:
        sys.exit(1)
    print(f"shape ok: {len(modules)} files, no import circle of more than two, no function over {MAX_FN_LINES} lines")


if __name__ == "__main__":
    main()
