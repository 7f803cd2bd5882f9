"""`cloudai certs ...` and `cloudai token ...`: the cluster's PKI and bearer tokens.

Also the options every process shares for TLS and tokens (used by cli/main.py).
"""

from __future__ import annotations

import json
import sys
import time

import typer

from cloudai.errors import CloudAIError

from .client import fail

certs_app = typer.Typer(no_args_is_help=True, help="Create the cluster's CA and certificates.")
token_app = typer.Typer(no_args_is_help=True, help="Mint, list and revoke bearer tokens.")

# -- options shared by master, worker, agent and the client commands ---------------------

TlsCaOpt = typer.Option(None, "--tls-ca", help="CA certificate (PEM); or CLOUDAI_TLS_CA.")
TlsCertOpt = typer.Option(
    None, "--tls-cert", help="This process's certificate (PEM); or CLOUDAI_TLS_CERT."
)
TlsKeyOpt = typer.Option(None, "--tls-key", help="Its private key (PEM); or CLOUDAI_TLS_KEY.")
TlsNameOpt = typer.Option(
    None,
    "--tls-server-name",
    help="Name the server's certificate must carry, if not the host dialled.",
)
TokenFileOpt = typer.Option(
    None,
    "--token-file",
    help="File holding the token to present (or CLOUDAI_TOKEN / CLOUDAI_TOKEN_FILE).",
)
InsecureOpt = typer.Option(
    False,
    "--insecure",
    help="Serve on a non-loopback address without TLS/tokens (prints a warning).",
)


def register(app: typer.Typer) -> None:
    app.add_typer(certs_app, name="certs")
    app.add_typer(token_app, name="token")


# -- certs ----------------------------------------------------------------------------------


@certs_app.command("init")
def certs_init(
    directory: str = typer.Argument(..., help="Folder for the CA and certificates."),
    host: list[str] = typer.Option(
        None, "--host", help="Extra name or IP for the master's certificate (repeatable)."
    ),
    worker: list[str] = typer.Option(
        None,
        "--worker",
        help="A worker certificate: ID or ID=HOST[,HOST] with its --ip (repeatable).",
    ),
    client: list[str] = typer.Option(
        None,
        "--client",
        help="A client certificate (repeatable; default admin, which naming any replaces).",
    ),
    agent: list[str] = typer.Option(
        None, "--agent", help="An agent certificate (repeatable; default agent)."
    ),
    days: int = typer.Option(825, "--days", help="Validity of the leaf certificates."),
    force: bool = typer.Option(False, "--force", help="Replace an existing CA."),
) -> None:
    """Create a CA and certificates for the master, workers, the agent and clients."""
    from cloudai.security import certs

    try:
        pairs = [certs.parse_worker_arg(w) for w in worker or []]
        workers = dict(pairs)
        if len(workers) < len(pairs):
            twice = next(w for w, _ in pairs if [p for p, _ in pairs].count(w) > 1)
            fail(f"--worker {twice} is given twice: give all its hosts in one --worker")
        issued = certs.init_pki(
            directory,
            hosts=list(host or []),
            workers=workers,
            agents=list(agent) if agent else None,
            clients=list(client) if client else None,
            days=days,
            force=force,
        )
    except CloudAIError as err:
        fail(str(err))
    for item in issued:
        sans = f"  ({', '.join(item.sans)})" if item.sans else ""
        print(f"✓ {item.name:<12} {item.cert}  {item.key}{sans}")
    print(
        f"Keys are mode 0600. Keep {directory}/ca.key offline: with it anyone can mint "
        "cluster identities.",
        file=sys.stderr,
    )


@certs_app.command("issue")
def certs_issue(
    directory: str = typer.Argument(..., help="Folder holding ca.crt and ca.key."),
    name: str = typer.Argument(..., help="Identity (certificate CN), e.g. worker-3."),
    host: list[str] = typer.Option(
        None, "--host", help="Name or IP the certificate is valid for (repeatable)."
    ),
    days: int = typer.Option(825, "--days", help="Validity in days."),
    force: bool = typer.Option(
        False, "--force", help="Replace NAME's existing certificate and key (a renewal)."
    ),
    client: bool = typer.Option(
        False,
        "--client",
        help="For clients only (a CLI user, an agent): it cannot serve, so it cannot pose "
        "as the master or a worker. A renewal keeps the certificate's usage.",
    ),
) -> None:
    """Issue (or, with --force, renew) one certificate with an existing CA.

    For example for a new worker, or with --client for a new user."""
    from pathlib import Path

    from cloudai.security import certs

    existing = Path(directory) / f"{name}.crt"
    if existing.exists() and not force:
        fail(f"{existing} exists: pass --force to replace it and its key (a renewal)")
    try:
        item = certs.issue(directory, name, list(host or []), days=days, client_only=client or None)
    except CloudAIError as err:
        fail(str(err))
    print(f"✓ {item.name} {item.cert} {item.key}  ({', '.join(item.sans)})")


# -- tokens ---------------------------------------------------------------------------------

TokensFileOpt = typer.Option(
    ..., "--file", help="The tokens file (the master's --tokens); created if missing."
)
# `token list` and `token revoke` read an existing file: they never create one.
ExistingTokensFileOpt = typer.Option(..., "--file", help="The tokens file (the master's --tokens).")


@token_app.command("create")
def token_create(
    role: str = typer.Option(..., "--role", help="admin, submitter, worker, agent or master."),
    subject: str = typer.Option(
        "", "--subject", help="Who holds it (a worker token: the worker id). Default: the role."
    ),
    file: str = TokensFileOpt,
    as_json: bool = typer.Option(False, "--json", help="Print id, role, subject and token."),
) -> None:
    """Mint a token. It is printed once, now: only its hash is stored."""
    from cloudai.security.tokens import TokenStore, parse_role

    try:
        token, entry = TokenStore(file).create(parse_role(role), subject)
    except CloudAIError as err:
        fail(str(err))
    if as_json:
        out = {"id": entry.id, "role": entry.role.value, "subject": entry.subject, "token": token}
        print(json.dumps(out))
    else:
        print(token)
        print(
            f"✓ token {entry.id} for {entry.role.value} {entry.subject!r} added to {file}; "
            "it is shown only this once",
            file=sys.stderr,
        )


@token_app.command("revoke")
def token_revoke(
    token_id: str = typer.Argument("", help="The token's id (see `token list`)."),
    file: str = ExistingTokensFileOpt,
    token_file: str = typer.Option("", "--token-file", help="Revoke the token in this file."),
    subject: str = typer.Option("", "--subject", help="Revoke every token of this subject."),
) -> None:
    """Revoke tokens. A running master refuses them from its next call on."""
    from cloudai.security.tokens import TokenStore, read_token

    try:
        token = read_token("", token_file) if token_file else ""
        ids = TokenStore(file).revoke(token=token, token_id=token_id, subject=subject)
    except CloudAIError as err:
        fail(str(err))
    print(f"✓ revoked {', '.join(ids)}")


@token_app.command("list")
def token_list(
    file: str = ExistingTokensFileOpt,
    as_json: bool = typer.Option(
        False, "--json", help="Print id, role, subject, state and creation time as JSON."
    ),
) -> None:
    """List tokens: id, role, subject, state. Never the tokens themselves."""
    from cloudai.security.tokens import TokenStore

    try:
        entries = TokenStore(file).entries()
    except CloudAIError as err:
        fail(str(err))
    if as_json:
        rows = [
            {
                "id": e.id,
                "role": e.role.value,
                "subject": e.subject,
                "revoked": e.revoked,
                "created_at": e.created_at,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return
    print(f"{'ID':<14}{'ROLE':<11}{'SUBJECT':<24}{'STATE':<9}CREATED")
    for e in entries:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created_at))
        state = "revoked" if e.revoked else "active"
        print(f"{e.id:<14}{e.role.value:<11}{e.subject:<24}{state:<9}{created}")
