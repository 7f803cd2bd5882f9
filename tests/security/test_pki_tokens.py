"""`cloudai certs` and `cloudai token`: what lands on disk, and what never does."""

from __future__ import annotations

import ipaddress
import json
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudai.errors import ConfigError, InvalidArgument, NotFound
from cloudai.security import certs
from cloudai.security.tokens import Role, TokenStore, token_hash


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args], capture_output=True, text=True, timeout=60
    )


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in ext}


def test_certs_init_cli_writes_ca_and_identities_with_safe_modes(tmp_path):
    d = tmp_path / "pki"
    out = run(
        "certs", "init", str(d), "--host", "master.example", "--host", "10.9.8.7",
        "--worker", "worker-1=192.0.2.5,w1.example", "--worker", "worker_2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = {"ca", "master", "worker-1", "worker_2", "agent", "admin"}
    assert {p.stem for p in d.glob("*.crt")} == names
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in names:
        assert stat.S_IMODE((d / f"{name}.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((d / f"{name}.crt").stat().st_mode) == 0o644
    ca = load(d / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    master = load(d / "master.crt")
    assert master.issuer == ca.subject
    assert master.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "master"
    assert {"localhost", "master.example"} <= sans(master)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.9.8.7")} <= {
        n for n in x509_ips(master)
    }
    w1 = load(d / "worker-1.crt")
    assert {"worker-1", "w1.example"} <= sans(w1)
    assert ipaddress.ip_address("192.0.2.5") in x509_ips(w1)
    eku = w1.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert "worker_2" not in sans(load(d / "worker_2.crt"))  # not a host name: CN only


def x509_ips(cert: x509.Certificate) -> set:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.IPAddress))


def test_certs_init_refuses_to_overwrite_a_ca(tmp_path):
    certs.init_pki(tmp_path)
    with pytest.raises(ConfigError, match="already holds a CA"):
        certs.init_pki(tmp_path)
    out = run("certs", "init", str(tmp_path))
    assert out.returncode == 1 and "already holds a CA" in out.stderr


def test_certs_issue_adds_a_worker_signed_by_the_same_ca(tmp_path):
    certs.init_pki(tmp_path)
    out = run("certs", "issue", str(tmp_path), "worker-9", "--host", "192.0.2.9")
    assert out.returncode == 0, out.stderr
    again = run("certs", "issue", str(tmp_path), "worker-9")  # would replace its key
    assert again.returncode == 1
    assert again.stderr == (
        f"cloudai: {tmp_path / 'worker-9.crt'} exists: pass --force to replace it and its "
        "key (a renewal)\n"
    )
    issued = load(tmp_path / "worker-9.crt")
    assert issued.issuer == load(tmp_path / "ca.crt").subject
    assert {"localhost", "worker-9"} <= sans(issued)  # its id, as `certs init` gives it
    assert ipaddress.ip_address("192.0.2.9") in x509_ips(issued)
    renewed = run("certs", "issue", str(tmp_path), "worker-9", "--force")
    assert renewed.returncode == 0, renewed.stderr
    assert load(tmp_path / "worker-9.crt").serial_number != issued.serial_number
    with pytest.raises(InvalidArgument):
        certs.issue(tmp_path, "bad name", [])
    with pytest.raises(InvalidArgument):
        certs.issue(tmp_path, "w", ["not a host"])


def test_tokens_are_stored_hashed_and_looked_up_by_role(tmp_path):
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    token, entry = store.create(Role.WORKER, "worker-1")
    text = path.read_text()
    assert token not in text and token_hash(token) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ident = store.lookup(token)
    assert ident is not None and (ident.role, ident.subject) == (Role.WORKER, "worker-1")
    for bad in ("", token + "x", token[:-1], "x" * 10_000, "cai_\x00\n", token.upper()):
        assert store.lookup(bad) is None
    assert [e.id for e in store.entries()] == [entry.id]


def test_revocation_by_token_id_and_subject(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    t1, e1 = store.create(Role.SUBMITTER, "alice")
    t2, _ = store.create(Role.SUBMITTER, "alice")
    t3, _ = store.create(Role.ADMIN, "root")
    assert store.revoke(token_id=e1.id) == [e1.id]
    assert store.lookup(t1) is None and store.lookup(t2) is not None
    store.revoke(subject="alice")
    assert store.lookup(t2) is None and store.lookup(t3) is not None
    with pytest.raises(NotFound):
        store.revoke(token="cai_unknown-token-0123456789")
    with pytest.raises(InvalidArgument):
        store.revoke(token_id="xyz")


def test_token_cli_prints_the_token_once_and_never_lists_it(tmp_path):
    path = tmp_path / "tokens.json"
    out = run("token", "create", "--role", "submitter", "--subject", "alice", "--file", str(path))
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("cai_") and "shown only this once" in out.stderr
    listing = run("token", "list", "--file", str(path), "--json")
    rows = json.loads(listing.stdout)
    assert rows[0]["role"] == "submitter" and rows[0]["subject"] == "alice"
    assert token not in listing.stdout + listing.stderr
    token_file = tmp_path / "alice.token"
    token_file.write_text(token)
    out = run("token", "revoke", "--file", str(path), "--token-file", str(token_file))
    assert out.returncode == 0 and "revoked" in out.stdout
    assert json.loads(run("token", "list", "--file", str(path), "--json").stdout)[0]["revoked"]
    bad = run("token", "create", "--role", "root", "--file", str(path))
    assert bad.returncode == 1 and "unknown role" in bad.stderr


def test_corrupt_tokens_file_is_a_config_error(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        TokenStore(path).lookup("cai_" + "a" * 40)


def test_read_token_refuses_two_tokens_and_what_is_not_a_token(tmp_path):
    """QA pass 7: CLOUDAI_TOKEN left in the shell silently won over --token-file (the
    command ran as admin, not as the user named), and a key file given as the token
    file failed as `internal: Invalid metadata`."""
    from cloudai.errors import ConfigError
    from cloudai.security.tokens import read_token

    good = tmp_path / "alice.token"
    good.write_text("cai_abc-DEF_123\n")
    assert read_token("", str(good)) == "cai_abc-DEF_123"
    assert read_token(" tok ", "") == "tok"
    with pytest.raises(ConfigError, match="a token is given twice, by CLOUDAI_TOKEN and by a"):
        read_token("admin-token", str(good))
    key = tmp_path / "admin.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as err:
        read_token("", str(key))
    assert str(err.value) == (
        f"token file {key} does not hold a token: a token is one line of printable ASCII "
        "with no spaces (as `cloudai token create` writes it)"
    )
    with pytest.raises(ConfigError, match="^CLOUDAI_TOKEN does not hold a token"):
        read_token("a\nb", "")


def test_revoke_without_a_target_names_the_real_options(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.create(Role.WORKER, "worker-1")
    with pytest.raises(InvalidArgument) as err:
        store.revoke()
    assert str(err.value) == (
        "name the token to revoke: its id (as `token list` shows it), --subject or --token-file"
    )


def test_a_nan_request_is_not_a_number():
    from cloudai.model import Resources
    from cloudai.validation import validate_resources

    with pytest.raises(InvalidArgument, match="^cpu request must be a number, got nan$"):
        validate_resources(Resources(cpu=float("nan")))
    with pytest.raises(InvalidArgument, match="^cpu request must be >= 0, got -1"):
        validate_resources(Resources(cpu=-1))


def test_certs_issue_client_makes_a_certificate_that_cannot_serve(tmp_path):
    """`certs issue NAME --client` for a new user or agent: clientAuth only, so TLS
    refuses it as a master's or a worker's; its renewal stays a client's, and a
    worker's stays a server's."""
    certs.init_pki(tmp_path)
    out = run("certs", "issue", str(tmp_path), "carol", "--client")
    assert out.returncode == 0, out.stderr
    assert certs.is_client_only(tmp_path / "carol.crt")
    assert run("certs", "issue", str(tmp_path), "carol", "--force").returncode == 0
    assert certs.is_client_only(tmp_path / "carol.crt")
    assert run("certs", "issue", str(tmp_path), "worker-9").returncode == 0
    assert not certs.is_client_only(tmp_path / "worker-9.crt")
