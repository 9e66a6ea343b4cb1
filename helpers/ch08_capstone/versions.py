"""The versions of the packages running in this kernel, read from their installed metadata (not from a pin file)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from helpers.core.validate import require_instance


def installed_version(distribution: str) -> str:
    """'name version' of an installed distribution (as pip names it), or 'name: not installed here'."""
    require_instance("distribution", distribution, str)
    try:
        return f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        return f"{distribution}: not installed here"
