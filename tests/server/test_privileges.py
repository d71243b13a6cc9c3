"""``privileges.drop``: started as root, the team server hands its artifacts folder and its
auth config to the user it serves as, then becomes that user; or says in one line why it cannot.

In-process (a forked child drops, so pytest keeps root), no PostgreSQL or server. Becoming another
user needs root, so these skip without it (and fail in CI). The end-to-end check, on the running
server's processes, is ``tests/tracking/test_server.py``'s ``serves_as_postgres``."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import require, require_root

from pipeline.server import privileges

USER = "nobody"


@pytest.fixture
def folder():
    """A folder outside pytest's 0700 temporary folder (the user must reach it), removed after."""
    require_root()
    require("runuser (util-linux)", None if shutil.which("runuser") else "runuser not found")
    made = Path(tempfile.mkdtemp(prefix="convlab-drop-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _in_child(work) -> dict:
    """Runs ``work()`` in a forked child and returns what it returned (a dict), or its error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            answer = work()
        except Exception as err:
            answer = {"error": f"{type(err).__name__}: {err}", "uid": os.getuid()}
        with os.fdopen(write, "w") as out:
            json.dump(answer, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        said = answer.read()
    os.waitpid(pid, 0)
    return json.loads(said)


def test_the_server_becomes_its_user_who_owns_the_artifacts_and_the_auth_config(folder):
    artifacts = folder / "artifacts"
    (artifacts / "1" / "abc").mkdir(parents=True)
    (artifacts / "1" / "abc" / "model.keras").write_bytes(b"weights")
    ini = folder / "auth" / "basic_auth.ini"
    ini.parent.mkdir(mode=0o700)
    ini.write_text("[mlflow]\n")
    ini.chmod(0o600)
    secret = folder / "root-only"
    secret.write_text("root's")
    secret.chmod(0o600)

    def work():
        os.setgroups([0])  # root's own group among its supplementary ones, as after a login
        privileges.drop(USER, artifacts, [ini.parent, ini])
        (Path.cwd() / "written-as-user").write_text("ok")  # the artifacts folder, now its own
        try:
            secret.read_text()
            read_root_file = True
        except PermissionError:
            read_root_file = False
        ids = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups()}
        return ids | {"cwd": os.getcwd(), "home": os.environ["HOME"], "read_root_file": read_root_file}

    done = _in_child(work)
    entry = pwd.getpwnam(USER)
    assert "error" not in done, done
    assert (done["uid"], done["euid"], done["gid"]) == (entry.pw_uid, entry.pw_uid, entry.pw_gid)
    assert 0 not in done["groups"] and not done["read_root_file"]  # root's group and files are gone
    assert done["cwd"] == str(artifacts) and done["home"] == entry.pw_dir
    tree = [artifacts, *artifacts.rglob("*"), ini.parent, ini]
    assert {path.stat().st_uid for path in tree} == {entry.pw_uid}
    assert (artifacts / "written-as-user").read_text() == "ok"
    assert secret.stat().st_uid == 0  # outside what it was given: untouched


def test_artifacts_the_user_cannot_reach_are_one_line_and_root_is_kept(folder):
    closed = folder / "closed"
    closed.mkdir(mode=0o700)  # root's: the user cannot go through it
    artifacts = closed / "artifacts"
    artifacts.mkdir()

    done = _in_child(lambda: privileges.drop(USER, artifacts, []) or {"uid": os.getuid()})
    assert done["uid"] == 0  # refused before it became the user
    assert done["error"].startswith("PrivilegeError: started as root, the server runs as nobody")
    assert f"cannot write {artifacts} ({closed} is closed to it)" in done["error"]
    assert "\n" not in done["error"]
