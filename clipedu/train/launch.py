"""Starting torchrun from a notebook: a subprocess whose log streams into the cell.

A Jupyter kernel cannot host the worker processes of a distributed run
itself, so `launch` runs `python -m torch.distributed.run` (torchrun) as a
child process and echoes every line the workers print as it arrives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from typing import Sequence

from clipedu.errors import ClipeduError


class LaunchError(ClipeduError, subprocess.CalledProcessError):
    """torchrun exited with an error; the message ends with the tail of its log."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- last lines of the log ---\n{self.output}"


def launch(args: Sequence[str], nproc: int = 2, env: dict[str, str] | None = None, tail_lines: int = 40) -> int:
    """Run `python -m torch.distributed.run --standalone --nproc_per_node=nproc *args`, streaming its log.

    Made for notebooks, which cannot host the worker processes themselves:
    e.g. `launch(["-m", "clipedu.train", "--preset", "shapes-tiny", "--out", "runs/ddp"], nproc=2)`.
    Every line the workers print is echoed as it arrives. Returns 0, or
    raises LaunchError carrying the last `tail_lines` lines.
    """
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        raise TypeError("args must be a list of strings, e.g. ['-m', 'clipedu.train', '--steps', '10', '--out', 'runs/ddp']")
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive int, got {nproc!r}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too, minus its warning banner
    full_env["PYTHONUNBUFFERED"] = "1"  # workers' prints arrive line by line, not at exit
    tail: deque[str] = deque(maxlen=tail_lines)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            tail.append(line)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted (e.g. the notebook's stop button): stop the workers too
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if returncode != 0:
        raise LaunchError(returncode, cmd, output="".join(tail))
    return returncode
