"""Run every chapter as a learner meets it on Colab, and print one row per chapter.

    python tools/colab_check.py                 # Colab's CPU runtime (tools/colab/pip-freeze.txt)
    python tools/colab_check.py --gpu           # Colab's GPU runtime (tools/colab/pip-freeze.gpu.txt)
    python tools/colab_check.py --chapters 5 A  # only these chapters (numbers) and appendices (letters)
    python tools/colab_check.py --save          # ... and keep the rows in results/colab-check.json (the README's)

What it builds, in .cache/colab-<runtime>/ (rebuilt when Colab's list or the Colab cell changes):
1. a virtual environment with Colab's Python (from os-info.txt; pyenv's, or COLAB_PYTHON);
2. the packages the chapters import that Colab ships, at Colab's versions, and whatever those need;
3. what every chapter's Colab cell installs, installed exactly as the cell does (pip's --quiet --no-deps), with a
   wheel of this checkout in place of the cell's git URL; then any package those need that Colab ships.
Each chapter then runs alone in an empty folder with a home of its own: no ledger, cache or repository file from
another chapter, as on Colab, where every notebook gets its own machine. Exit status 1 if a chapter fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.course import COLAB_PIP_OPTIONS, colab_extra_packages, load_course  # noqa: E402
from tools.package import build_helpers_wheel  # noqa: E402

COLAB = ROOT / "tools" / "colab"
RESULT = ROOT / "results" / "colab-check.json"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Besides the helpers' own dependencies: the kernel, the notebook runner and pytest (Colab ships all three).
KERNEL_PACKAGES = ("ipykernel", "ipython", "jupyter_client", "nbclient", "nbformat", "pytest")
# The widgets' own tests, run with Colab's ipywidgets (7, where the course pins 8): a change of value re-renders.
WIDGET_TESTS = "tests/unit/support/test_widgets.py"
CHAPTER_TIMEOUT_S = 1200


@dataclass(frozen=True)
class Runtime:
    """One of Colab's runtimes: its package list and OS file."""

    name: str
    freeze: Path
    os_info: Path

    @property
    def python_version(self) -> str:
        """'3.13', read from the OS file's 'Python 3.13.x' line."""
        found = re.search(r"^Python (\d+\.\d+)", self.os_info.read_text(), re.MULTILINE)
        if not found:
            raise ValueError(f"{self.os_info} names no 'Python X.Y' line")
        return found.group(1)

    def pins(self) -> dict[str, str]:
        """Colab's 'name==version' pins by lower-case name, local labels such as +cpu dropped (any build matches).

        CUDA's own packages are left to torch: the build pip finds here may want another CUDA release than Colab's.
        """
        pins = {}
        for line in self.freeze.read_text().splitlines():
            if "==" in line and not line.startswith(("#", "nvidia-", "cuda-")):
                name, version = line.split("==", 1)
                pins[name.strip().lower().replace("_", "-")] = version.split("+")[0].strip()
        return pins


RUNTIMES = {"cpu": Runtime("cpu", COLAB / "pip-freeze.txt", COLAB / "os-info.txt"),
            "gpu": Runtime("gpu", COLAB / "pip-freeze.gpu.txt", COLAB / "os-info-gpu.txt")}


def find_python(version: str) -> Path:
    """COLAB_PYTHON, pyenv's python<version>, or one on PATH; a clear error when none is installed."""
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    candidates = [os.environ.get("COLAB_PYTHON"), *pyenv, shutil.which(f"python{version}")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise SystemExit(f"Colab runs Python {version}, which is not installed here: `pyenv install {version}`, "
                     f"or set COLAB_PYTHON to a python{version}")


def course_imports() -> list[str]:
    """The helpers' declared dependencies (pyproject.toml) and the kernel's packages, by name."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [re.split(r"[<>=!~ ;\[]", dependency, maxsplit=1)[0] for dependency in dependencies] + list(KERNEL_PACKAGES)


def pip(venv: Path, *args: str) -> None:
    """pip install in the environment; stop with pip's own message if it fails."""
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip install {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def torch_index(runtime: Runtime) -> list[str]:
    """PyTorch's CPU index for the CPU runtime's +cpu builds, when it answers; otherwise PyPI's build of the release."""
    if runtime.name != "cpu":
        return []
    try:
        urllib.request.urlopen(f"{TORCH_CPU_INDEX}/torch/", timeout=5)
    except OSError:
        return []
    return ["--extra-index-url", TORCH_CPU_INDEX]


def missing_colab_dependencies(venv: Path, pins: dict[str, str]) -> list[str]:
    """Requirements `pip check` reports as not installed that Colab ships, pinned at Colab's version."""
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    names = {match.lower().replace("_", "-") for match in re.findall(r"requires ([\w.-]+), which is not installed",
                                                                       done.stdout)}
    return sorted(f"{name}=={pins[name]}" for name in names if name in pins)


def build_environment(runtime: Runtime, folder: Path) -> Path:
    """The virtual environment with Colab's Python and packages and the Colab cell's installs (built once)."""
    venv = folder / "venv"
    stamp = venv / ".colab-check"
    recipe = json.dumps([runtime.freeze.read_text(), colab_extra_packages(load_course()), course_imports()])
    if stamp.exists() and stamp.read_text() == recipe:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(find_python(runtime.python_version)), "-m", "venv", str(venv)], check=True)
    pins = runtime.pins()
    constraints = folder / "colab-constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    print(f"installing Colab's {runtime.name} packages that the chapters import (a few minutes, once)", flush=True)
    pip(venv, "--quiet", "-c", str(constraints), *torch_index(runtime), *course_imports())
    pip(venv, *COLAB_PIP_OPTIONS, *colab_extra_packages(load_course()))
    while missing := missing_colab_dependencies(venv, pins):
        pip(venv, "--quiet", "--no-deps", *missing)
    kernel = venv / "share" / "jupyter" / "kernels" / "colab-check"
    kernel.mkdir(parents=True, exist_ok=True)
    argv = [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernel / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Colab check", "language": "python"}))
    stamp.write_text(recipe)
    return venv


def installed_versions(venv: Path, names: tuple[str, ...] = ("torch", "torchao", "ipywidgets", "protobuf")) -> dict:
    """Python's version and the versions that matter, as the environment reports them."""
    script = ("import json, platform, importlib.metadata as m\n"
              f"versions = {{n: m.version(n) for n in {list(names)}}}\n"
              "print(json.dumps({'python': platform.python_version(), **versions}))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def chapter_environment(venv: Path, home: Path) -> dict[str, str]:
    """A clean environment for one chapter: the venv first on PATH, a home of its own, no course variables."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("COURSE_", "JUPYTER", "PYTHON", "VIRTUAL_ENV", "TORCHINDUCTOR"))}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", HOME=str(home),
               TORCHINDUCTOR_CACHE_DIR=str(home / "inductor"))
    return env


def run_chapter(venv: Path, notebook: Path, keep: Path) -> dict:
    """Execute one chapter alone in an empty folder; its executed copy is kept in keep/ for reading failures."""
    with tempfile.TemporaryDirectory(prefix=f"colab-{notebook.stem}-") as machine:
        work, home = Path(machine) / "content", Path(machine) / "root"
        work.mkdir()
        home.mkdir()
        shutil.copy(notebook, work / notebook.name)
        runner = [str(venv / "bin" / "python"), str(ROOT / "tools" / "colab_run_chapter.py"), notebook.name]
        try:
            done = subprocess.run(runner, cwd=work, env=chapter_environment(venv, home), capture_output=True,
                                  text=True, timeout=CHAPTER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"wall_s": CHAPTER_TIMEOUT_S, "errors": [{"cell": 0, "ename": "Timeout", "evalue": "no result"}]}
        shutil.copy(work / notebook.name, keep / notebook.name)
        if done.returncode != 0:
            return {"wall_s": 0, "errors": [{"cell": 0, "ename": "RunnerError", "evalue": done.stderr[-300:]}]}
        return json.loads(done.stdout.strip().splitlines()[-1])


def widget_tests(venv: Path) -> dict:
    """The widget helpers' unit tests in the environment (Colab's ipywidgets): passed or pytest's last lines."""
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
               WIDGET_TESTS]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return {"passed": done.returncode == 0, "summary": done.stdout.strip().splitlines()[-1] if done.stdout else ""}


def row_text(key: str, result: dict) -> str:
    """'ran' or the first failing cell, its error and how many cells failed; then the wall time."""
    errors = result["errors"]
    if not errors:
        verdict = "ran"
    else:
        first = errors[0]
        verdict = f"FAILED at code cell {first['cell']}: {first['ename']}: {first['evalue'].splitlines()[0][:120]}"
        verdict += f" ({len(errors)} cells failed)"
    return f"| {key} | {verdict} | {result['wall_s']:.0f} s |"


def save_result(check: dict) -> None:
    """Keep the check in results/colab-check.json; rows of chapters not run now stay from the last check of the
    same image, runtime and versions (so that `--chapters 5` after a fix completes the record)."""
    same = ("image", "runtime", "versions")
    if RESULT.exists() and all(json.loads(RESULT.read_text())[key] == check[key] for key in same):
        checked = {row["chapter"] for row in check["rows"]}
        kept = [row for row in json.loads(RESULT.read_text())["rows"] if row["chapter"] not in checked]
        check["rows"] = sorted(kept + check["rows"], key=lambda row: row["chapter"])
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(check, indent=1) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="Colab's GPU runtime instead of the CPU runtime")
    parser.add_argument("--chapters", nargs="*", help="chapter numbers and appendix letters, e.g. 5 A (default: all)")
    parser.add_argument("--save", action="store_true", help="keep the rows in results/colab-check.json")
    args = parser.parse_args()
    course = load_course()
    unknown = sorted(set(args.chapters or ()) - {c.key for c in course.chapters})
    if unknown:
        parser.error(f"--chapters: no chapter or appendix {', '.join(unknown)} in book.toml; "
                     f"choose from {' '.join(c.key for c in course.chapters)}")
    runtime = RUNTIMES["gpu" if args.gpu else "cpu"]
    folder = ROOT / ".cache" / f"colab-{runtime.name}"
    venv = build_environment(runtime, folder)
    keep = folder / "executed"
    keep.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as build:
        pip(venv, *COLAB_PIP_OPTIONS, "--force-reinstall", str(build_helpers_wheel(Path(build))))
    versions = installed_versions(venv)
    source = json.loads((COLAB / "source.json").read_text())
    print(f"Colab's {runtime.name} runtime ({source['repository']}@{source['commit'][:7]}, {source['date']}): "
          + ", ".join(f"{name} {version}" for name, version in versions.items()))
    rows = []
    print("| # | Result | Wall time |\n|---|---|---|", flush=True)
    chapters = [c for c in course.chapters if not args.chapters or c.key in args.chapters]
    for chapter in chapters:
        result = run_chapter(venv, ROOT / chapter.file, keep)
        rows.append({"chapter": chapter.number, **result})  # by number, as in the ledger: Appendix A is 9
        print(row_text(chapter.key, result), flush=True)
    widgets = widget_tests(venv)
    print(f"widget tests with ipywidgets {versions['ipywidgets']}: {widgets['summary']}")
    failed = [chapter.key for chapter, row in zip(chapters, rows) if row["errors"]]
    print(f"executed copies in {keep.relative_to(ROOT)}/; " + (f"chapters failing: {', '.join(failed)}" if failed else
                                                                "every chapter ran"))
    if args.save:
        save_result({"date": datetime.date.today().isoformat(), "runtime": runtime.name, "image": source,
                     "versions": versions, "rows": rows, "widget_tests": widgets})
    return 1 if failed or not widgets["passed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
