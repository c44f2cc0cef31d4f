"""Import cycles among the files of src/ (bash scripts/check_architecture.sh runs it).

Each file is a module (`a/mod.rs` is `a`); an edge goes from a file to every
module its `crate::` and `super::` paths name (the longest prefix that is a
file). Prints each cycle (a strongly connected set of files) and exits 1 if
there is any.
"""
import re, sys, pathlib
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
mods = {}
for f in root.rglob("*.rs"):
    rel = f.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    if parts and parts[0] == "bin":
        continue
    mods[tuple(parts)] = f
def resolve(path):
    # longest prefix that is a module file
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None
edges = {m: set() for m in mods}
for m, f in mods.items():
    text = f.read_text()
    # strip comments
    text = re.sub(r"//[^\n]*", "", text)
    # expand use groups roughly: capture crate::a::b and crate::{a::b, c}
    for mt in re.finditer(r"\b(crate|super)((?:::\{?[A-Za-z_][A-Za-z0-9_]*)+)", text):
        base = [] if mt.group(1) == "crate" else list(m[:-1]) if not str(f).endswith("mod.rs") else list(m[:-1])
        segs = [s.strip("{") for s in mt.group(2).split("::") if s]
        target = resolve(base + segs)
        if target and target != m and not (len(m) > len(target) and m[:len(target)] == target):
            edges[m].add(target)
    # use groups: crate::{a, b::c}
    for mt in re.finditer(r"use (crate|super)::\{([^;]*)\};", text, re.S):
        base = [] if mt.group(1) == "crate" else list(m[:-1])
        body = mt.group(2)
        # top-level items
        depth = 0; cur = ""; items = []
        for ch in body:
            if ch == "{": depth += 1
            if ch == "}": depth -= 1
            if ch == "," and depth == 0:
                items.append(cur); cur = ""
            else:
                cur += ch
        items.append(cur)
        for it in items:
            it = it.strip()
            if not it: continue
            first = re.split(r"::|\{", it)[0].strip()
            segs = [s.strip() for s in re.split(r"::", it.split("{")[0]) if s.strip()]
            target = resolve(base + segs) or resolve(base + [first])
            if target and target != m and not (len(m) > len(target) and m[:len(target)] == target):
                edges[m].add(target)
# Tarjan SCC
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in edges:
    if v not in index: strong(v)
name = lambda m: "::".join(m) or "crate"
for c in sccs:
    print("cycle:", ", ".join(sorted(name(m) for m in c)))
    for m in c:
        print("  ", name(m), "->", ", ".join(sorted(name(t) for t in edges[m] if t in c)))
print(f"{len(sccs)} cycles among {len(mods)} modules")
sys.exit(1 if sccs else 0)
