"""Check TensorRT code without a GPU, against the names compiled into TensorRT's real Python bindings.

The wheel `tensorrt-cu13-bindings` (pinned in requirements.txt) holds `tensorrt_bindings/tensorrt.so`,
the pybind11 module, but it cannot be imported without TensorRT's libraries. Its string table still
lists every class, method, property and enum member it registers, and its docstring symbols
(`tensorrt::BuilderDoc::build_serialized_network`) pair documented methods with their class. Reading
them proves that a name exists in this release, or that it is gone; not that a call's arguments are
right, nor that an engine builds: only a GPU run shows that.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
DOC_SYMBOL = re.compile(rb"_ZN8tensorrt(\d+)(\w+)")
# The variable names our TensorRT code gives each object, and the TensorRT class each one holds.
VARIABLE_CLASSES = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
                    "config": "IBuilderConfig", "profile": "IOptimizationProfile", "runtime": "Runtime",
                    "engine": "ICudaEngine", "context": "IExecutionContext", "logger": "Logger"}
# Names that TensorRT 10 or 11 removed, and what replaced them.
REMOVED = {
    "build_engine": "Builder.build_serialized_network, then Runtime.deserialize_cuda_engine (removed in 10)",
    "execute_async_v2": "IExecutionContext.set_tensor_address and execute_async_v3 (removed in 10)",
    "EXPLICIT_BATCH": "nothing: every network is explicit-batch (flag removed in 11)",
    "max_workspace_size": "IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...) (removed in 10)",
    "platform_has_fast_fp16": "nothing: precision comes from the model's types (removed in 11)",
    "FP16": "an fp16 model; strongly typed networks take their precision from it (BuilderFlag.FP16 removed in 11)",
    "IInt8EntropyCalibrator2": "explicit Q/DQ nodes in the model (calibrators removed in 11)",
}


@dataclass(frozen=True)
class TensorRTNames:
    """The identifiers a TensorRT bindings module registers, and the documented methods of each class."""

    identifiers: frozenset[str]
    documented: dict[str, frozenset[str]]

    def has(self, name: str) -> bool:
        """True when the module holds the name (the linker may store it as the tail of a longer string)."""
        return name in self.identifiers or any(other.endswith(name) for other in self.identifiers)

    def evidence(self, owner: str, member: str) -> str:
        """How the table knows owner.member: a documented method of the class, a registered name, or missing."""
        if member in self.documented.get(owner, ()):
            return f"documented method of {owner}"
        if self.has(owner) and self.has(member):
            return "registered name"
        return "MISSING"


def bindings_library() -> Path | None:
    """The installed bindings module (found without importing it, which would need the libraries), or None."""
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or spec.origin is None:
        return None
    libraries = sorted(Path(spec.origin).parent.glob("tensorrt*.so"))
    return libraries[0] if libraries else None


def _doc_pair(owner_length: bytes, rest: bytes) -> tuple[str, str] | None:
    """Decode `<n>ClassDocL<m>memberE` (an Itanium-mangled name) into (Class, member), or None."""
    owner, rest = rest[:int(owner_length)], rest[int(owner_length):]
    member_length = re.match(rb"L?(\d+)", rest)
    if not owner.endswith(b"Doc") or member_length is None:
        return None
    start = member_length.end()
    member = rest[start:start + int(member_length.group(1))]
    if rest[start + len(member):start + len(member) + 1] != b"E":
        return None
    return owner[:-3].decode(), member.decode()


def read_names(library: str | Path) -> TensorRTNames:
    """Every identifier string of the compiled module, and the class of each documented method."""
    data = Path(library).read_bytes()
    strings = data.split(b"\0")
    identifiers = frozenset(s.decode() for s in strings if IDENTIFIER.fullmatch(s) and not s.startswith(b"_Z"))
    documented: dict[str, set[str]] = defaultdict(set)
    for match in DOC_SYMBOL.finditer(data):
        pair = _doc_pair(match.group(1), match.group(2))
        if pair:
            documented[pair[0]].add(pair[1])
    if "create_execution_context" not in identifiers:
        raise ValueError(f"{library} does not look like TensorRT's Python bindings")
    return TensorRTNames(identifiers, {owner: frozenset(members) for owner, members in documented.items()})


def _chain(node: ast.AST) -> list[str]:
    """`trt.MemoryPoolType.WORKSPACE` -> ['trt', 'MemoryPoolType', 'WORKSPACE']; [] for other expressions."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else []


def tensorrt_names_used(source: str) -> list[tuple[str, str]]:
    """(class, member) pairs a piece of code uses: `trt.Class.member`, `trt.Class`, and `variable.member`
    for the variables named in VARIABLE_CLASSES."""
    used = set()
    for node in ast.walk(ast.parse(source)):
        chain = _chain(node) if isinstance(node, ast.Attribute) else []
        if len(chain) >= 2 and chain[0] == "trt":
            used.add(("tensorrt", chain[1]) if len(chain) == 2 else (chain[1], chain[2]))
        elif len(chain) == 2 and chain[0] in VARIABLE_CLASSES:
            used.add((VARIABLE_CLASSES[chain[0]], chain[1]))
    return sorted(used)


def check_names(source: str, names: TensorRTNames) -> pd.DataFrame:
    """Each TensorRT name the code uses, with the evidence that TensorRT has it."""
    used = tensorrt_names_used(source)
    if not used:
        raise ValueError("the code uses no TensorRT names (expected trt.<Class> or builder./engine./context. ...)")
    rows = [{"class": owner, "name": member,
             "found as": "registered name" if owner == "tensorrt" and names.has(member)
             else "MISSING" if owner == "tensorrt" else names.evidence(owner, member)}
            for owner, member in used]
    return pd.DataFrame(rows)


def removed_names_table(names: TensorRTNames) -> pd.DataFrame:
    """The removed names, whether the compiled module still holds them, and what replaced each."""
    return pd.DataFrame([{"name": name, "in TensorRT's module": names.has(name), "use instead": instead}
                         for name, instead in REMOVED.items()])
