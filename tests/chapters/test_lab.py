"""`make lab` opens JupyterLab on the chapters, and the learner can reach helpers/ from its file browser."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import ROOT

TOKEN = "course-lab-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[str, bytes]:
    """The final URL after redirects, and the body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.geturl(), response.read()


@pytest.mark.slow
def test_make_lab_opens_on_the_chapters_with_helpers_reachable():
    port = free_port()
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token={TOKEN} --ServerApp.allow_root=True"
    lab = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                landing, _ = get(f"{base}/?token={TOKEN}")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        assert landing.split("?")[0] == f"{base}/lab/tree/notebooks"
        _, listing = get(f"{base}/api/contents/helpers?token={TOKEN}")
        entries = {entry["name"] for entry in json.loads(listing)["content"]}
        assert {"README.md", "core", "ch01_measure", "ch08_capstone"} <= entries
        _, chapters = get(f"{base}/api/contents/notebooks?token={TOKEN}")
        assert "ch01_measure.ipynb" in {entry["name"] for entry in json.loads(chapters)["content"]}
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)
