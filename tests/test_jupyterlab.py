"""JupyterLab starts in the kit's environment, sees the series and the kit's kernel, and stops."""
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from metagen_utils import kernels

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_jupyterlab_lists_the_notebooks_through_its_rest_api(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}"]
    if os.geteuid() == 0:  # CI runs as root, which Jupyter refuses unless told
        cmd.append("--allow-root")
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"),
                              env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, listing = time.monotonic() + 90, None
        while time.monotonic() < deadline and listing is None:
            try:
                with urllib.request.urlopen(f"{base}/api/contents/notebooks?token={token}", timeout=5) as r:
                    listing = json.load(r)
            except OSError:
                assert server.poll() is None, (tmp_path / "lab.log").read_text()
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer within 90 s:\n" + (tmp_path / "lab.log").read_text()
        names = {item["name"] for item in listing["content"]}
        assert "01_preprocessing.ipynb" in names
        with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=5) as r:
            specs = json.load(r)["kernelspecs"]
        assert specs["metagen"]["spec"]["display_name"] == "Python 3 (metagen kit)"
        # the kit's kernel computes with the CPU kernels the committed outputs were computed with
        pinned = {k: v for k, v in kernels.CPU_KERNELS.items() if k in os.environ}
        assert {k: specs["metagen"]["spec"]["env"].get(k) for k in pinned} == pinned
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode is not None
