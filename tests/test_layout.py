"""The layout holds: rooms import only what they may, no module imports itself back, and no
module reaches into another's private names. Read from the source with ``ast``, so a lazy
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGES = {
    "deepkeys.device": REPO / "device",
    "deepkeys.host": REPO / "host",
    "deepkeys.hil": REPO / "hil",
}
# Each room of device/ and what it may import besides the ground floor and itself.
ROOMS = {
    "adapters": set(),
    "generation": set(),
    "appliance": {"adapters", "generation"},
    "maintenance": {"adapters", "generation", "appliance"},
    "cli": {"adapters", "generation", "appliance", "maintenance"},
}


def modules() -> dict[str, Path]:
    """Every module of deepkeys by dotted name (tests and conftest excluded)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if path.name.startswith("test_") or path.name == "conftest.py":
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = modules()


def imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every import in ``name``, relative
    imports resolved."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # `from package import module`
                    out.append((submodule, None, node.lineno))
                else:
                    out.append((base, alias.name, node.lineno))
    return out


def own(target: str) -> str | None:
    """The deepkeys module that ``target`` names, or None for anything else."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def room_of(name: str) -> str | None:
    """ "adapters", "generation", ... for a device module in a room; None on the ground floor."""
    parts = name.split(".")
    if parts[:2] != ["deepkeys", "device"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in ROOMS else None


def test_every_module_is_found() -> None:
    assert "deepkeys.device.appliance.daemon" in MODULES
    assert "deepkeys.device.encoding" in MODULES
    assert len(MODULES) > 60


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("deepkeys.device")))
def test_rooms_import_only_what_they_may(name: str) -> None:
    room = room_of(name)
    allowed = ROOMS.get(room, set()) if room else set()
    for target, _, line in imports(name):
        if target.startswith(("deepkeys.host", "deepkeys.hil")) and room != "cli":
            pytest.fail(f"{name}:{line} imports {target}: only the CLI may reach the host and hil")
        if target.split(".")[0] == "tensorflow":
            pytest.fail(f"{name}:{line} imports TensorFlow: the device never does")
        other = room_of(target) if target.startswith("deepkeys.device.") else None
        if other and other != room and other not in allowed:
            where = f"the {room} room" if room else "the ground floor"
            pytest.fail(f"{name}:{line} imports {target}: {where} may not import {other}")


def test_no_module_imports_a_private_name_of_another() -> None:
    crossings = [
        f"{name}:{line} imports {target}.{imported}"
        for name in MODULES
        for target, imported, line in imports(name)
        if imported
        and imported.startswith("_")
        and not imported.startswith("__")
        and own(target) not in (None, name)
    ]
    assert crossings == []


def test_no_import_cycles() -> None:
    graph = {name: {own(t) for t, _, _ in imports(name)} - {None, name} for name in MODULES}
    # A package's __init__ that re-exports its modules is not a cycle with them.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (t and name.startswith(t + "."))}
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str | None]]) -> list[str] | None:
    """One cycle of the graph as a list of names, or None (depth first, iterative)."""
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, list[str]]] = [(root, sorted(t for t in graph[root] if t))]
        state[root] = 1
        path.append(root)
        while stack:
            node, todo = stack[-1]
            if not todo:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(t for t in graph.get(nxt, ()) if t)))
    return None


def test_the_state_machine_needs_no_io_library() -> None:
    """The appliance's logic is pure: importing it loads neither mido nor a hardware library."""
    code = (
        "import sys, deepkeys.device.appliance.state\n"
        "heavy = {'mido', 'rtmidi', 'gpiozero', 'alsaaudio', 'fluidsynth', 'ai_edge_litert'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
