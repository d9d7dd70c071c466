"""Containing a student's code: an audit hook that refuses what exercise code never needs.

`contain(root)` is called in the process that is about to run a student's
cell, after everything trusted is loaded. From then on, in that process:

- files may be written, created, renamed or deleted only under `root` (the
  process's own temporary folder); reading stays allowed (torch and numpy
  read their own files);
- no new processes (subprocess, os.system, exec, fork, spawn), no signals to
  other processes, no sockets, no ctypes;
- `clipedu.grade` and `clipedu.course` cannot be imported (the registry's
  references and hidden cases stay out of reach);
- at most `max_file_mb` MB may be written to one file and `cpu_seconds` of CPU used.

A Python audit hook cannot be removed once installed (PEP 578). It is a
classroom safeguard, not a security boundary against a determined attacker:
grade a class you do not trust inside a container or a throw-away VM too.
"""

from __future__ import annotations

import os
import resource
import sys

__all__ = ["Refused", "contain"]

BLOCKED_MODULES = ("clipedu.grade", "clipedu.course")
BLOCKED_EVENTS = (
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "signal.pthread_kill", "os.symlink", "os.link", "os.chown", "os.chmod",
    "os.setxattr", "os.removexattr", "pty.spawn", "sys.remote_exec", "os.startfile",
)
PATH_EVENTS = {"os.remove": 0, "os.rmdir": 0, "os.mkdir": 0, "os.rename": (0, 1), "os.truncate": 0,
               "os.utime": 0, "shutil.rmtree": 0, "shutil.move": (0, 1), "shutil.copyfile": 1}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class Refused(PermissionError):
    """An operation the grader does not allow a student's code to do."""


def _inside(path, root: str) -> bool:
    if isinstance(path, int):
        return True  # an already-open file descriptor: it was checked when opened
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == root or real.startswith(root + os.sep)


def _writes(mode, flags) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def contain(root: str, max_file_mb: int = 50, cpu_seconds: int | None = None) -> None:
    """Install the audit hook (irreversible) and the resource limits for this process."""
    root = os.path.realpath(root)
    for name in [m for m in sys.modules if m.startswith(BLOCKED_MODULES)]:
        del sys.modules[name]  # so that `import` goes through the hook instead of the cache
    limit = max_file_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if _writes(mode, flags) and not _inside(path, root):
                raise Refused(f"the grader does not let exercise code write to {path}")
        elif event in PATH_EVENTS:
            where = PATH_EVENTS[event]
            for i in (where if isinstance(where, tuple) else (where,)):
                if i < len(args) and not _inside(args[i], root):
                    raise Refused(f"the grader does not let exercise code change {args[i]} ({event})")
        elif event == "import":
            if args and isinstance(args[0], str) and args[0].startswith(BLOCKED_MODULES):
                raise Refused(f"the grader does not let exercise code import {args[0]}")
        elif event.startswith(("socket.", "ctypes.")) or event.startswith(BLOCKED_EVENTS):
            raise Refused(f"the grader does not let exercise code use {event}")

    sys.addaudithook(hook)
