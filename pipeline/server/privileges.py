"""Started as root, the team server serves as another user (``--run-as``, default ``convlab``: an
unprivileged system user that ``--setup`` creates; not ``postgres``, who owns every database).

That user runs this very Python, so it must be able to reach it: traverse every folder above
the interpreter's real path (a pyenv Python lives under ``/root``, which is 0700), and read the
standard library and the venv's site-packages. ``.ci/unprivileged-python`` opens exactly those
on a CI box; elsewhere ``--run-as USER`` names a user who can, or ``--run-as root`` keeps root
knowingly. The server reads its credentials file as root, before it drops them: the user never
needs to read it. It gets the artifacts folder (and the basic-auth config) as its own, link by
link: a symbolic link in there is never followed (that user could point one at /etc/shadow).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from pipeline.config.errors import ConvlabError

# The first of ``x:PATH`` (PATH traversable) or ``r:PATH`` (a folder listable too) that fails.
_FIRST_CLOSED = (
    'for p; do case $p in x:*) test -x "${p#x:}" ;; r:*) test -r "${p#r:}" -a -x "${p#r:}" ;; esac'
    ' || { echo "${p#?:}"; exit 0; }; done'
)


class PrivilegeError(ConvlabError):
    """The user the server should run as does not exist, or cannot run it."""


def cannot_run(user: str) -> str | None:
    """Why ``user`` cannot run this Python with MLflow (naming the first folder closed to it), else None."""
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('mlflow') else 3)"
    done = _as_user(user, [sys.executable, "-c", probe])
    if done.returncode == 0:
        return None
    interpreter = os.path.realpath(sys.executable)  # a venv's python links to the one it was made from
    leaves = [sysconfig.get_path("stdlib"), sysconfig.get_path("purelib")]
    closed = first_closed(user, [sys.executable, interpreter], leaves)
    if done.returncode == 3:
        what = f"import mlflow from {leaves[1]}"
    else:  # named by the path below the closed folder: the venv's link, or the Python it links to
        below = [p for p in (sys.executable, interpreter) if closed and Path(closed) in Path(p).parents]
        what = f"run {(below or [sys.executable])[0]}"
    where = f" ({closed} is closed to it)" if closed else ""
    return f"the user {user} cannot {what}{where}: make it readable to {user}, or pass --run-as USER"


def cannot_write(user: str, folder: Path) -> str | None:
    """Why ``user`` cannot write ``folder`` (an existing folder), else None."""
    done = _as_user(user, ["test", "-w", str(folder), "-a", "-x", str(folder)])
    if done.returncode == 0:
        return None
    closed = first_closed(user, [], [str(folder)])
    where = f" ({closed} is closed to it)" if closed else ""
    return f"the user {user} cannot write {folder}{where}: pick --artifacts it reaches, or pass --run-as USER"


def first_closed(user: str, files: Sequence[str], folders: Sequence[str]) -> str | None:
    """The first folder above ``files`` and ``folders`` that ``user`` cannot traverse, or the
    first of ``folders`` it cannot list; None if all are open to it."""
    checks: list[str] = []
    for path in [*files, *folders]:
        above = [str(p) for p in reversed(Path(path).parents)]
        checks += [f"x:{folder}" for folder in above if f"x:{folder}" not in checks]
    checks += [f"r:{folder}" for folder in folders]
    done = _as_user(user, ["sh", "-c", _FIRST_CLOSED, "sh", *checks])
    return done.stdout.strip() or None


def check(user: str) -> None:
    """Fails in one line, before anything starts, if ``user`` is missing or cannot run this Python."""
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"--run-as {user}: no such user (--setup creates it)") from None
    reason = cannot_run(user)
    if reason:
        raise PrivilegeError(f"started as root, the server runs as {user}, but {reason}")


def ensure_user(user: str) -> bool:
    """Creates ``user`` as a system user (no login shell, no home) unless it exists; True if created."""
    import pwd

    try:
        pwd.getpwnam(user)
        return False
    except KeyError:
        pass
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(p)), "/bin/false")
    command = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", nologin]
    done = subprocess.run([*command, user], capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise PrivilegeError(f"cannot create the user {user} (useradd): {reason}")
    return True


def hand_over(uid: int, gid: int, folder: Path, owned: Sequence[Path] = ()) -> None:
    """``folder``, everything below it, and ``owned`` become ``uid``'s: each link itself, never
    what it points to (a link is not followed into another folder either)."""
    for parent, folders, files in os.walk(folder, followlinks=False):
        for name in (".", *folders, *files):
            os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)
    for path in owned:
        os.chown(path, uid, gid, follow_symlinks=False)


def drop(user: str, artifacts: Path, owned: Sequence[Path]) -> None:
    """Becomes ``user``: the artifacts folder and ``owned`` (the auth config) become theirs first."""
    import pwd

    entry = pwd.getpwnam(user)
    hand_over(entry.pw_uid, entry.pw_gid, artifacts, owned)
    reason = cannot_write(user, artifacts)
    if reason:
        raise PrivilegeError(f"started as root, the server runs as {user}, but {reason}")
    os.setgroups(os.getgrouplist(user, entry.pw_gid))
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)
    os.chdir(artifacts)


def _as_user(user: str, command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *command], capture_output=True, text=True, cwd="/")
