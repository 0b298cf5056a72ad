"""``airflow-aml service --ssl-certfile``: the service over HTTPS, and clients on ``https://`` store
URIs trusting its CA through ``SSL_CERT_FILE`` (and refusing it, clearly, when they do not)."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_aml.exceptions import StoreError
from airflow_aml.workspace import Workspace
from tests.unit.cli.test_service import CLI, START_TIMEOUT, _cli, _env
from tests.unit.service.served import free_port


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, written as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("aml test CA")).issuer_name(_name("aml test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def tls_service(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """The service over HTTPS on a free port: (its https URL, its environment, the CA file)."""
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    env = _env(tmp_path / "home", AML_STORE_URI=f"sqlite:///{tmp_path / 'served.db'}")
    port = free_port()
    process = subprocess.Popen(
        [CLI, "service", "--port", str(port), "--log-level", "warning", "--ssl-certfile", str(cert),
         "--ssl-keyfile", str(key)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(url + "/openapi.json", timeout=2, verify=str(ca)).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                out, err = process.communicate(timeout=10)
                raise AssertionError(f"airflow-aml service --ssl-certfile did not start:\n{out}\n{err}")
            time.sleep(0.1)
        assert process.stdout is not None
        assert process.stdout.readline().startswith(f"Workspace service on {url} ")
        yield url, env, ca
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_clients_reach_the_service_over_https_trusting_its_ca(
    tls_service: tuple[str, dict[str, str], Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, env, ca = tls_service
    created = _cli(env, "token", "create", "--principal", "alice")  # on the service's database
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    host = url.removeprefix("https://")

    # The CLI as a user types it, over https, trusting the CA through SSL_CERT_FILE.
    client_env = {**_env(Path(env["AML_HOME"]).with_name("client-home")), "AML_STORE_URI": url,
                  "AML_TOKEN": token, "SSL_CERT_FILE": str(ca)}
    made = _cli(client_env, "workspace", "create", "demo")
    assert made.returncode == 0, made.stderr
    whoami = httpx.get(f"{url}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, verify=str(ca))
    assert whoami.json()["principal"] == "alice"

    # The SDK in this process.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    ws = Workspace.get("demo", store_uri=f"https://:{token}@{host}")
    assert ws.principal == "alice" and ws.role is not None and ws.role.value == "Owner"

    # Without the CA: a clear error at once, not five retries of an unfixable handshake.
    monkeypatch.delenv("SSL_CERT_FILE")
    other = _cli(env, "token", "create", "--principal", "alice", "--name", "second").stdout.strip()
    started = time.monotonic()
    with pytest.raises(StoreError, match="certificate this client does not trust.*SSL_CERT_FILE"):
        Workspace.get("demo", store_uri=f"https://:{other}@{host}")  # a new URI: a new client
    assert time.monotonic() - started < 2.0
    refused = _cli({**client_env, "SSL_CERT_FILE": ""}, "workspace", "list")
    assert refused.returncode == 1 and "SSL_CERT_FILE" in refused.stderr


def test_a_key_without_a_certificate_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_text("not used")
    result = _cli(_env(tmp_path / "home"), "service", "--ssl-keyfile", str(key))
    assert result.returncode == 1 and "--ssl-keyfile needs --ssl-certfile" in result.stderr
