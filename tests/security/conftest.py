"""Fixtures for the security tests: a PKI from `certs init` in a tmp dir, and a
master with mTLS and tokens on loopback."""

from __future__ import annotations

import pytest

from tests.security.seckit import make_pki, start_secure_master


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory, pki):
    """A master with mTLS and tokens on loopback, and two mTLS workers registered."""
    cluster = start_secure_master(tmp_path_factory.mktemp("master"), pki)
    for worker_id in ("worker-a", "worker-b"):
        cluster.add_worker(worker_id)
    yield cluster
    cluster.close()
