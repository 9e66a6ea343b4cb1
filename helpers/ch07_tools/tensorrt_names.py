"""Check TensorRT code without a GPU, against the names compiled into TensorRT's real Python bindings.

The wheel `tensorrt-cu13-bindings` holds `tensorrt_bindings/tensorrt.so`, the pybind11 module, with a little
Python around it; it cannot be imported without TensorRT's libraries, but it can be read. Release 11.4 is
installed with the course (pinned with the other packages); release 10.16 cannot be installed beside it (the
module has the same name), so `bindings_wheel` downloads its wheel once into the course's cache, and
`read_names` reads the module straight from the wheel (a zip file).

What the module shows, strongest evidence first (the labels of check_names' table):
- "documented method of C": a docstring symbol, `tensorrt::CDoc::member`, pairs the method with its class;
- "C.member in NVIDIA's text": a docstring of the module, or NVIDIA's Python code in the wheel, writes it so;
- "documented class": the class or enum has docstring symbols of its own;
- "set in tensorrt's __init__.py": a module attribute the package's Python code sets (`__version__`);
- "documented attribute": a class docstring lists `:ivar member:`, without saying which class holds it;
- "name only (weak)": the string occurs somewhere in the module (whole, or as the tail of a longer one,
  which is how the linker stores it). This cannot fail for a common word (WORKSPACE, INPUT, AMPERE_PLUS)
  and does not tie the name to its class or enum: the module does not say which enum a member belongs to.
Every label but the first also needs the name itself in the module, so that a docstring that still mentions
a removed name is no evidence. None of it shows that a call's arguments are right, nor that an engine
builds: only a GPU run shows that.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from helpers.support.course_folder import course_folder

IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
DOC_SYMBOL = re.compile(rb"_ZN8tensorrt(\d+)(\w+)")
DOTTED = re.compile(r"(?=\b([A-Z][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\b)")
IVAR = re.compile(r":ivar ([A-Za-z_][A-Za-z0-9_]*):")
MODULE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)
PACKAGE = "tensorrt_bindings"
# TensorRT 10's bindings, read from their wheel (never installed); the Makefile's setup downloads the same wheel.
TENSORRT_10_BINDINGS = "tensorrt-cu13-bindings==10.16.1.11"
WHEEL_PLATFORM = "manylinux_2_28_x86_64"  # any machine can read this wheel's module: it is never loaded
CACHE_ENV = "COURSE_CACHE"
WEAK = "name only (weak)"
MISSING = "MISSING"
# The variable names our TensorRT code gives each object, and the TensorRT class each one holds.
VARIABLE_CLASSES = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
                    "config": "IBuilderConfig", "profile": "IOptimizationProfile", "runtime": "Runtime",
                    "engine": "ICudaEngine", "context": "IExecutionContext", "logger": "Logger"}
# Names that TensorRT 10 or 11 removed: the major release that removed each, and what replaced it.
REMOVED = {
    "build_engine": (10, "Builder.build_serialized_network, then Runtime.deserialize_cuda_engine"),
    "execute_async_v2": (10, "IExecutionContext.set_tensor_address and execute_async_v3"),
    "max_workspace_size": (10, "IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)"),
    "EXPLICIT_BATCH": (11, "nothing: every network is explicit-batch"),
    "platform_has_fast_fp16": (11, "nothing: precision comes from the model's types"),
    "FP16": (11, "an fp16 model: strongly typed networks take their precision from it (it was BuilderFlag.FP16)"),
    "IInt8EntropyCalibrator2": (11, "explicit Q/DQ nodes in the model"),
}


@dataclass(frozen=True)
class TensorRTNames:
    """What one release's bindings module says about its names (see the module's docstring for each kind)."""

    version: str
    identifiers: frozenset[str]
    documented: dict[str, frozenset[str]]
    dotted: frozenset[tuple[str, str]]
    attributes: frozenset[str]
    module_names: frozenset[str]

    def has(self, name: str) -> bool:
        """True when the module holds the name (the linker may store it as the tail of a longer string)."""
        return name in self.identifiers or any(other.endswith(name) for other in self.identifiers)

    def evidence(self, owner: str, member: str) -> str:
        """The strongest evidence that owner.member exists (owner 'tensorrt': the module), or MISSING."""
        if member in self.documented.get(owner, ()):
            return f"documented method of {owner}"
        if owner != "tensorrt" and not self.has(owner) or not self.has(member):
            return MISSING
        if owner == "tensorrt":
            return ("documented class" if member in self.documented
                    else "set in tensorrt's __init__.py" if member in self.module_names else WEAK)
        if (owner, member) in self.dotted:
            return f"{owner}.{member} in NVIDIA's text"
        return "documented attribute" if member in self.attributes else WEAK


def bindings_library() -> Path | None:
    """The installed bindings module (found without importing it, which would need the libraries), or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    libraries = sorted(Path(spec.origin).parent.glob("tensorrt*.so"))
    return libraries[0] if libraries else None


def bindings_cache() -> Path:
    """Where downloaded bindings wheels go: $COURSE_CACHE, else .cache/ in the course folder, else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "tensorrt-bindings"
    folder = course_folder()
    return (folder / ".cache" if folder else Path.home() / ".cache" / "dl-perf-course") / "tensorrt-bindings"


def _download_command(requirement: str, folder: Path) -> list[str]:
    """pip download of one wheel, without its dependencies, for Linux x86-64 and this Python."""
    return [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--platform", WHEEL_PLATFORM, "--dest", str(folder), requirement]


def bindings_wheel(requirement: str = TENSORRT_10_BINDINGS, folder: str | Path | None = None, *,
                   download: bool = True) -> Path:
    """The wheel of `requirement` in folder (bindings_cache() by default), downloaded there once with pip."""
    name, separator, version = requirement.partition("==")
    if not separator or not name or not version:
        raise ValueError(f"requirement must be 'package==version', got {requirement!r}")
    folder = Path(folder) if folder is not None else bindings_cache()
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    if not sorted(folder.glob(pattern)) and download:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            run = subprocess.run(_download_command(requirement, folder), capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pip download {requirement} took more than 300 s") from None
        if run.returncode != 0:
            lines = [line for line in run.stderr.splitlines() if "is ignored" not in line] or ["(no message)"]
            raise RuntimeError(f"pip download {requirement} failed: {lines[-1]}")
    found = sorted(folder.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} in {folder}" + ("" if download else " (download=False)"))
    return found[0]


def _module_files(source: Path) -> tuple[bytes, dict[str, str]]:
    """The compiled module's bytes and the package's Python files, from an installed .so or from a wheel."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(f"{PACKAGE}/")]
            libraries = [m for m in members if re.fullmatch(rf"{PACKAGE}/tensorrt[^/]*\.so", m)]
            if not libraries:
                raise ValueError(f"{source} holds no {PACKAGE}/tensorrt*.so: not a TensorRT bindings wheel")
            python = {m[len(PACKAGE) + 1:]: wheel.read(m).decode() for m in members if m.endswith(".py")}
            return wheel.read(libraries[0]), python
    if not source.is_file():
        raise ValueError(f"no TensorRT bindings module at {source}")
    python = {str(p.relative_to(source.parent)): p.read_text() for p in sorted(source.parent.rglob("*.py"))}
    return source.read_bytes(), python


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


def _documented(data: bytes) -> dict[str, frozenset[str]]:
    """Each class with docstring symbols, and the members they document."""
    documented: dict[str, set[str]] = defaultdict(set)
    for match in DOC_SYMBOL.finditer(data):
        pair = _doc_pair(match.group(1), match.group(2))
        if pair:
            documented[pair[0]].add(pair[1])
    return {owner: frozenset(members) for owner, members in documented.items()}


def read_names(source: str | Path) -> TensorRTNames:
    """Read a bindings module: an installed tensorrt*.so (bindings_library()) or a bindings wheel (.whl)."""
    data, python = _module_files(Path(source))
    strings = data.split(b"\0")
    identifiers = frozenset(s.decode() for s in strings if IDENTIFIER.fullmatch(s) and not s.startswith(b"_Z"))
    if "create_execution_context" not in identifiers:
        raise ValueError(f"{source} does not look like TensorRT's Python bindings")
    texts = [s.decode(errors="replace") for s in strings if b" " in s] + list(python.values())
    init = python.get("__init__.py", "")
    version = re.search(r"__version__\s*=\s*[\"']([^\"']+)", init)
    return TensorRTNames(
        version=version.group(1) if version else "unknown", identifiers=identifiers, documented=_documented(data),
        dotted=frozenset(pair for text in texts for pair in DOTTED.findall(text)),
        attributes=frozenset(name for text in texts for name in IVAR.findall(text)),
        module_names=frozenset(MODULE_NAME.findall(init)))


def _chain(node: ast.AST) -> list[str]:
    """`trt.MemoryPoolType.WORKSPACE` -> ['trt', 'MemoryPoolType', 'WORKSPACE']; [] for other expressions."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else []


def tensorrt_names_used(source: str) -> list[tuple[str, str]]:
    """(class, member) pairs a piece of code uses: `trt.Class.member`, `trt.Class`, and `variable.member` or
    `self.variable.member` for the variables named in VARIABLE_CLASSES."""
    used = set()
    for node in ast.walk(ast.parse(source)):
        chain = _chain(node) if isinstance(node, ast.Attribute) else []
        if chain[:1] == ["self"]:
            chain = chain[1:]
        if len(chain) >= 2 and chain[0] == "trt":
            used.add(("tensorrt", chain[1]) if len(chain) == 2 else (chain[1], chain[2]))
        elif len(chain) == 2 and chain[0] in VARIABLE_CLASSES:
            used.add((VARIABLE_CLASSES[chain[0]], chain[1]))
    return sorted(used)


def check_names(source: str, names: TensorRTNames) -> pd.DataFrame:
    """Each TensorRT name the code uses, with the strongest evidence that this release has it."""
    used = tensorrt_names_used(source)
    if not used:
        raise ValueError("the code uses no TensorRT names (expected trt.<Class> or builder./engine./context. ...)")
    return pd.DataFrame([{"class": owner, "name": member, "found as": names.evidence(owner, member)}
                         for owner, member in used])


def check_names_across(source: str, releases: Sequence[TensorRTNames]) -> pd.DataFrame:
    """check_names for several releases side by side: one column per release's version."""
    if not releases:
        raise ValueError("releases must hold at least one TensorRTNames (from read_names)")
    tables = [check_names(source, names).rename(columns={"found as": f"TensorRT {names.version}"})
              for names in releases]
    merged = tables[0]
    for table in tables[1:]:
        merged = merged.merge(table, on=["class", "name"])
    return merged


def removed_names_table(*releases: TensorRTNames) -> pd.DataFrame:
    """The removed names, the release that removed each, whether each given release still holds it, and the fix."""
    if not releases:
        raise ValueError("give at least one TensorRTNames (from read_names)")
    return pd.DataFrame([{"name": name, "removed in": f"TensorRT {major}",
                          **{f"in TensorRT {names.version}": names.has(name) for names in releases},
                          "use instead": instead}
                         for name, (major, instead) in REMOVED.items()])
