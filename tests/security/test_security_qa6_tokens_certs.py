"""`cloudai token` and `cloudai certs` edge cases an operator hits: a tokens file with
a bad entry or of another program, an unwritable location, parallel creates, a typo
in `certs init`, a zero validity, names given twice. Real CLI processes; each error
is one line and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from multiprocessing import get_context
from pathlib import Path

import pytest

from cloudai.security.tokens import Role, TokenStore

CLI = [sys.executable, "-m", "cloudai"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def one_line_error(proc: subprocess.CompletedProcess, part: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cloudai"), proc.stderr
    assert "Traceback" not in proc.stderr and part in lines[0], proc.stderr


# -- tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "part"),
    [
        ({"role": "superuser", "subject": "x"}, "unknown role 'superuser'"),
        ({"role": "admin", "created_at": "yesterday"}, "created_at that is not a number"),
        ("admin", "is not an object"),
    ],
)
def test_bad_token_entry_is_one_line_for_list_and_master(tmp_path: Path, entry, part) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"version": 1, "tokens": {"abcdef0123456789": entry}}))

    one_line_error(cli("token", "list", "--file", str(path), cwd=tmp_path), part)
    master = cli(
        "master", "--no-console", "--port", "0", "--db", ":memory:", "--tokens", str(path),
        cwd=tmp_path,
    )  # fmt: skip
    assert master.returncode == 1 and "Traceback" not in master.stderr, master.stderr
    assert part in master.stderr


@pytest.mark.parametrize("text", ["[1, 2]", '{"name": "my-app", "version": "1.0"}'])
def test_token_create_never_overwrites_another_json_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "package.json"
    path.write_text(text)

    proc = cli("token", "create", "--role", "admin", "--file", str(path), cwd=tmp_path)

    one_line_error(proc, "is not a CloudAI tokens file")
    assert path.read_text() == text
    assert proc.stdout == ""  # no token printed that was never stored


def test_token_create_into_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")

    proc = cli("token", "create", "--role", "admin", "--file", f"{blocker}/t.json", cwd=tmp_path)

    one_line_error(proc, "cannot write tokens file")


def test_revoke_in_a_missing_file_says_so(tmp_path: Path) -> None:
    proc = cli("token", "revoke", "--file", "nope.json", "--subject", "x", cwd=tmp_path)

    one_line_error(proc, "tokens file nope.json does not exist")


def _mint(args: tuple[str, int]) -> str:
    path, i = args
    return TokenStore(path).create(Role.WORKER, f"w-{i}")[0]


def test_parallel_creates_keep_every_token(tmp_path: Path) -> None:
    """Separate processes minting at once: every printed token must work."""
    path = str(tmp_path / "tokens.json")
    with get_context("fork").Pool(6) as pool:
        minted = pool.map(_mint, [(path, i) for i in range(36)])

    store = TokenStore(path)
    assert len(store.entries()) == 36
    assert all(store.lookup(token) is not None for token in minted)


def test_revoke_racing_creates_is_never_lost(tmp_path: Path) -> None:
    path = str(tmp_path / "tokens.json")
    victim, _ = TokenStore(path).create(Role.ADMIN, "mallory")
    ctx = get_context("fork")
    with ctx.Pool(4) as pool:
        pending = pool.map_async(_mint, [(path, i) for i in range(24)])
        TokenStore(path).revoke(token=victim)
        pending.get(timeout=60)

    assert TokenStore(path).lookup(victim) is None


# -- certs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "part"),
    [
        (["--host", "my_host"], "invalid host name for a certificate: 'my_host'"),
        (["--worker", "w 1=10.0.0.1"], "invalid certificate name 'w 1'"),
        (["--days", "0"], "--days must be at least 1"),
        (["--days", "-3"], "--days must be at least 1"),
        (["--worker", "master=10.0.0.5"], "certificate name 'master' is given twice"),
        (["--client", "agent"], "certificate name 'agent' is given twice"),
        (["--worker", "w1", "--worker", "w1=10.0.0.1"], "--worker w1 is given twice"),
    ],
)
def test_bad_certs_init_writes_nothing_and_can_be_rerun(tmp_path: Path, args, part) -> None:
    proc = cli("certs", "init", "pki", *args, cwd=tmp_path)

    one_line_error(proc, part)
    assert not (tmp_path / "pki").exists()
    again = cli("certs", "init", "pki", "--worker", "w1=10.0.0.1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "pki" / "ca.key").exists() and (tmp_path / "pki" / "w1.crt").exists()


def test_certs_issue_refuses_zero_days(tmp_path: Path) -> None:
    assert cli("certs", "init", "pki", cwd=tmp_path).returncode == 0

    one_line_error(cli("certs", "issue", "pki", "w9", "--days", "0", cwd=tmp_path), "--days")
    assert not (tmp_path / "pki" / "w9.crt").exists()


def test_certs_init_into_unwritable_place_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    one_line_error(cli("certs", "init", "file/pki", cwd=tmp_path), "cannot write certificates")


def test_certs_init_keeps_the_mode_of_a_folder_with_other_files(tmp_path: Path) -> None:
    shared, empty = tmp_path / "shared", tmp_path / "empty"
    shared.mkdir(mode=0o755)
    (shared / "notes.txt").write_text("mine")
    empty.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    os.chmod(empty, 0o755)

    assert cli("certs", "init", "shared", cwd=tmp_path).returncode == 0
    assert cli("certs", "init", "empty", cwd=tmp_path).returncode == 0

    assert shared.stat().st_mode & 0o777 == 0o755
    assert empty.stat().st_mode & 0o777 == 0o700
    assert (shared / "ca.key").stat().st_mode & 0o777 == 0o600
