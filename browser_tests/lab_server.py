"""A JupyterLab server for one test: started from this environment on a free local port, always stopped.

    with LabServer(root, log=out / "jupyterlab.log") as lab:
        page.goto(lab.url("lab/tree/notebooks/16_interactive.ipynb"))
        lab.kernels()                       # GET /api/kernels
        lab.kernel_client(kernel_id)        # a second client of a notebook's kernel, to read its state

Stopping shuts every kernel down through the REST API, asks the server to
shut down, then terminates whatever the server started (its kernels included)
and the server itself: nothing is left running, even after a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

# The test's own JupyterLab user settings, on top of the project's configuration (.jupyter/, as `make lab`
# reads it; it is what keeps the "official Jupyter news?" pop-up away): no autosave (a test never writes the
# student's notebook), and every cell attached to the page so that the widgets of all cells are in the DOM.
TEST_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    def __init__(self, root: Path, log: Path, env: dict[str, str] | None = None, start_timeout: float = 180):
        self.root, self.log_path, self.start_timeout = Path(root), Path(log), start_timeout
        self.extra_env = env or {}
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="clipedu-lab-"))

    # ------------------------------------------------------------------ start and stop
    def __enter__(self) -> "LabServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        settings = self.tmp / "user-settings"
        for name, values in TEST_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        env.update({
            # runtime files (the kernels' connection files) and workspaces in our own folder: a fresh lab
            "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime"),
            "PYTHONUNBUFFERED": "1",
        })
        project_config = self.root / ".jupyter"  # the Makefile's LAB_CMD: in front of the user's own config
        if project_config.is_dir():
            env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
                p for p in [str(project_config), os.environ.get("JUPYTER_CONFIG_PATH", "")] if p)
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI run as root; Jupyter refuses to otherwise
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}; its log: "
                                   f"{self.log_path}\n{self.log_path.read_text()[-3000:]}")
            try:
                self.api("status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {self.start_timeout:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            children = []
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)  # the kernels among them
            except psutil.NoSuchProcess:
                pass
            try:  # the polite way: kernels first, then the server
                for kernel in self.kernels():
                    self.api(f"kernels/{kernel['id']}", method="DELETE", timeout=20)
                self.api("shutdown", method="POST", timeout=10)
                self.proc.wait(timeout=20)
            except Exception:
                pass
            for child in children:  # a kernel the server failed to stop
                _terminate(child)
            if self.proc.poll() is None:
                _terminate(psutil.Process(self.proc.pid))
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ the server's API
    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict]:
        return self.api("kernels")

    def session_kernel(self, notebook: str) -> dict | None:
        """The kernel model ({'id', 'execution_state', ...}) of the session of `notebook` (a path from root)."""
        for session in self.api("sessions"):
            if session.get("path") == notebook and session.get("kernel"):
                return self.api(f"kernels/{session['kernel']['id']}")
        return None

    def kernel_client(self, kernel_id: str):
        """A blocking jupyter_client of the kernel `kernel_id`, from its connection file; stop_channels() it."""
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(connection_file=str(self.tmp / "runtime" / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        return client


def run_in_kernel(client, code: str, timeout: float = 120) -> str:
    """Run `code` in the kernel through `client`; what it printed to stdout (an error raises, with its traceback)."""
    msg_id = client.execute(code, store_history=False, allow_stdin=False)
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        msg = client.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            chunks.append(content["text"])
        elif kind == "error":
            raise RuntimeError("the kernel raised:\n" + "\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(chunks)


def _terminate(process: psutil.Process) -> None:
    try:
        process.terminate()
        process.wait(timeout=10)
    except psutil.TimeoutExpired:
        process.kill()
    except psutil.NoSuchProcess:
        pass
