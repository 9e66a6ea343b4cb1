"""Text that ships with Python: the docstrings of a fixed list of standard-library modules, as bytes.

Byte-level tokens need no tokenizer: token = byte, vocabulary 256. Whole modules go either to
training or to validation (every fifth module held out), so the validation text is prose the model
never saw, not neighbouring lines of the same docstring. The docstrings differ a little between
Python versions, so the corpus's size is printed, never assumed.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

import torch

from helpers.core.validate import require_int

MODULES = ("argparse", "ast", "asyncio.events", "base64", "bisect", "calendar", "collections", "configparser",
           "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum",
           "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "html.parser", "http.client", "inspect",
           "ipaddress", "itertools", "json", "logging", "mailbox", "numbers", "operator", "optparse", "pathlib",
           "pickle", "pprint", "queue", "random", "re", "sched", "shlex", "shutil", "smtplib", "socket",
           "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit",
           "tokenize", "traceback", "fnmatch", "unittest.case", "urllib.parse", "uuid", "wave", "weakref",
           "xml.dom.minidom", "zipfile")
HELD_OUT_EVERY = 5  # every fifth module is validation text


def module_docstrings(name: str) -> str:
    """The docstrings of a module, its public classes and functions, and their public methods, in source order."""
    module = importlib.import_module(name)
    found = [inspect.getdoc(module) or ""]
    for attribute, value in vars(module).items():
        if attribute.startswith("_") or getattr(value, "__module__", None) != name:
            continue
        found.append(inspect.getdoc(value) or "")
        if inspect.isclass(value):
            found += [inspect.getdoc(member) or "" for key, member in vars(value).items()
                      if not key.startswith("_") and callable(member)]
    return "\n\n".join(doc for doc in found if doc.strip())


@dataclass(frozen=True)
class Corpus:
    """Training and validation text as byte tensors (uint8), split by module."""

    train: torch.Tensor
    validation: torch.Tensor
    train_modules: tuple[str, ...]
    validation_modules: tuple[str, ...]


def docstring_corpus(modules: tuple[str, ...] = MODULES) -> Corpus:
    """The docstrings of modules, every HELD_OUT_EVERY-th module held out for validation."""
    if len(modules) < HELD_OUT_EVERY:
        raise ValueError(f"modules must list at least {HELD_OUT_EVERY} names, got {len(modules)}")
    parts: dict[bool, list[str]] = {True: [], False: []}
    for index, name in enumerate(modules):
        parts[index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1].append(name)

    def as_bytes(names: list[str]) -> torch.Tensor:
        text = "\n\n".join(module_docstrings(name) for name in names)
        return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)

    return Corpus(as_bytes(parts[False]), as_bytes(parts[True]), tuple(parts[False]), tuple(parts[True]))


def text_of(tokens: torch.Tensor) -> str:
    """Token ids back to text (bytes that are not valid UTF-8 shown as the replacement character)."""
    return bytes(tokens.flatten().to(torch.uint8).tolist()).decode("utf-8", errors="replace")


def tokens_of(text: str) -> torch.Tensor:
    """Text as a (1, bytes) tensor of token ids."""
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    return torch.tensor([list(text.encode("utf-8"))], dtype=torch.long)


def random_windows(data: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor,
                                                                                                      torch.Tensor]:
    """batch windows of length tokens and the same windows shifted by one (the next-token targets)."""
    require_int("batch", batch, minimum=1)
    require_int("length", length, minimum=1)
    if len(data) <= length:
        raise ValueError(f"data holds {len(data)} tokens, fewer than a window of {length} + 1")
    starts = torch.randint(0, len(data) - length - 1, (batch,), generator=generator)
    windows = torch.stack([data[s:s + length + 1] for s in starts.tolist()]).long()
    return windows[:, :-1], windows[:, 1:]
