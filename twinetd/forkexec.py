# -*- test-case-name: tests.unit.test_spawn,tests.integration.test_spawn -*-
"""
Starting a child with Python's C{fork_exec}, as L{twinetd.spawn} does in
the daemon and L{twinetd.spawnerprocess} does in the spawner process.

Standard library only: the spawner process imports it without Twisted, and
without C{subprocess} or C{typing} (imported on the paths that need them:
about 1 MB of the spawner process's 12 at its start).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
import sys
from collections.abc import Iterable, Mapping, Sequence

# Annotations only (mypy reads this as typing.TYPE_CHECKING).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The working directory of every child (xinetd's C{chdir("/")} at start).
CHILD_CWD = "/"


def startChild(
    argv: list[str],
    executable: str,
    environment: Sequence[bytes],
    stdio: tuple[int | None, int | None, int | None],
    umask: int,
    credentials: Mapping[str, Any],
) -> int:
    """
    Start a child in a new session, working directory C{/}, signals
    restored, every descriptor but 0-2 closed; return its pid.

    @param environment: its variables as C{execve} takes them, C{KEY=value}
        (L{environmentBlock}).
    @param stdio: the child's descriptors 0-2 (C{None}: C{/dev/null}).
    @param umask: its umask, or -1 for the caller's.
    @param credentials: C{user}, C{group} and C{extra_groups} as
        L{subprocess.Popen} takes them (empty: change nothing).
    @raise OSError: the program could not be executed (the child is
        reaped), as L{subprocess.Popen} raises it.
    @raise subprocess.SubprocessError: likewise, for other failures.
    """
    if FORK_EXEC is not None and os.path.isabs(executable):
        return forkExec(argv, executable, environment, stdio, umask, **credentials)
    import subprocess

    popen = subprocess.Popen(
        argv,
        executable=executable,
        env=dict(entry.split(b"=", 1) for entry in environment),
        stdin=subprocess.DEVNULL if stdio[0] is None else stdio[0],
        stdout=subprocess.DEVNULL if stdio[1] is None else stdio[1],
        stderr=subprocess.DEVNULL if stdio[2] is None else stdio[2],
        close_fds=True,
        restore_signals=True,
        start_new_session=True,
        cwd=CHILD_CWD,
        umask=umask,
        **credentials,
    )
    # The caller reaps the child: a returncode keeps Popen.__del__ from
    # adding it to subprocess._active, whose cleanup would reap it behind
    # the caller's back.
    popen.returncode = 0
    return popen.pid


def forkExecFunction() -> Any:
    """
    C{_posixsubprocess.fork_exec} when this Python's signature is one
    L{forkExec} knows (3.10 to 3.13), else C{None} (L{subprocess.Popen} is
    used then).
    """
    if sys.version_info[:2] not in ((3, 10), (3, 11), (3, 12), (3, 13)):
        return None
    try:
        import _posixsubprocess
    except ImportError:
        return None
    return _posixsubprocess.fork_exec


#: See L{forkExecFunction}; tests set it to C{None} for the Popen path.
FORK_EXEC = forkExecFunction()


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


@functools.lru_cache(maxsize=1024)
def environmentEntry(key: str, value: str) -> bytes:
    """
    C{KEY=value} as C{fork_exec} takes it (as L{subprocess.Popen} encodes
    it, with C{os.fsencode}).  Kept: most of a child's variables that are
    not shared (L{twinetd.spawn.environmentBlock}) are the same from child
    to child too (C{REMOTE_HOST}, C{PROTO}, the local address).
    """
    name = key.encode(_FS_ENCODING, _FS_ERRORS)
    if b"=" in name:
        raise ValueError("illegal environment variable name")
    return name + b"=" + value.encode(_FS_ENCODING, _FS_ERRORS)


def environmentBlock(pairs: Iterable[tuple[str, str]]) -> list[bytes]:
    """
    Variables as L{startChild} takes them.
    """
    return [environmentEntry(key, value) for key, value in pairs]


def forkExec(
    argv: list[str],
    executable: str,
    environment: Sequence[bytes],
    stdio: tuple[int | None, int | None, int | None],
    umask: int,
    user: int | None = None,
    group: int | None = None,
    extra_groups: list[int] | None = None,
) -> int:
    """
    What L{subprocess.Popen} does for L{startChild}'s arguments (an absolute
    executable, C{close_fds}, C{restore_signals}, C{start_new_session},
    C{cwd}), calling C{fork_exec} directly: no Popen object, its locks and
    handle bookkeeping, about half of Popen's own cost per child.  The
    child's failure to start comes back through the same error pipe, as
    the same C{OSError}.

    @param stdio: the child's descriptors 0-2 (C{None}: C{/dev/null}).
    """
    devnull = -1
    if None in stdio:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    p2cread, c2pwrite, errwrite = (devnull if fd is None else fd for fd in stdio)
    errRead, errWrite = os.pipe()
    try:
        # Not 0-2, which the child's dup2s would overwrite.
        low = []
        while errWrite < 3:
            low.append(errWrite)
            errWrite = os.dup(errWrite)
        for fd in low:
            os.close(fd)
        groups = None if extra_groups is None else list(extra_groups)
        common = (
            argv,
            (os.fsencode(executable),),
            True,
            (errWrite,),
            CHILD_CWD,
            environment,
            p2cread,
            -1,
            -1,
            c2pwrite,
            -1,
            errwrite,
            errRead,
            errWrite,
            True,
            True,
        )
        if sys.version_info[:2] == (3, 10):
            args = (*common, group, groups, user, umask, None)
        else:
            # Only code that imported subprocess can have turned it off.
            useVfork = getattr(sys.modules.get("subprocess"), "_USE_VFORK", True)
            args = (*common, -1, group, groups, user, umask, None, useVfork)
        try:
            pid: int = FORK_EXEC(*args)
        finally:
            os.close(errWrite)
            if devnull >= 0:
                os.close(devnull)
        data = b""
        while len(data) <= 50000:
            part = os.read(errRead, 50000)
            if not part:
                break
            data += part
    finally:
        os.close(errRead)
    if data:
        failedChild(pid, data, executable)
    return pid


def failedChild(pid: int, data: bytes, executable: str) -> None:
    """
    The child could not execute C{executable}: reap it and raise what
    L{subprocess.Popen} raises from its error pipe's C{data}.
    """
    import subprocess

    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    try:
        name, hexErrno, message = data.split(b":", 2)
        text = message.decode()
    except ValueError:
        raise subprocess.SubprocessError(
            f"bad exception data from child: {data!r}"
        ) from None
    number = int(hexErrno, 16)
    kind = getattr(builtins, name.decode("ascii", "replace"), None)
    if isinstance(kind, type) and issubclass(kind, OSError) and number:
        strerror = os.strerror(number)
        if text == "noexec":
            raise kind(number, strerror)
        raise kind(
            number, strerror, CHILD_CWD if text == "noexec:chdir" else executable
        )
    raise subprocess.SubprocessError(text)
