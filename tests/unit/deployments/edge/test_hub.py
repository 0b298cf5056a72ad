"""Applying the manifest through the real IoT Hub SDK, to a recording HTTPS server on 127.0.0.1.

No IoT Hub is reachable here. The SDK builds ``https://<HostName>`` from the connection string,
so the HostName is ``127.0.0.1:<port>`` of a TLS server whose self-signed certificate the test
makes and trusts through ``REQUESTS_CA_BUNDLE`` (msrest sends with requests, which reads it).
Everything above the socket is the SDK's own: URL, api-version, serialised body, SAS token.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_aml.exceptions import DeploymentError, ValidationError
from airflow_aml.workspace import Workspace
from tests.unit.deployments.edge.conftest import REFERENCE

SAS_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class RecordingHub:
    def __init__(self, folder: Path) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urllib.parse.urlsplit(self.path)
                hub.requests.append({"method": self.command, "path": url.path,
                                     "query": urllib.parse.parse_qs(url.query), "headers": dict(self.headers),
                                     "body": json.loads(body) if body else None})
                # As the REST API documents: 204 for applyConfigurationContent, the configuration for a PUT.
                status = hub.status if hub.status != 200 or self.command == "PUT" else 204
                answer = b"" if status == 204 else json.dumps(
                    {**(hub.requests[-1]["body"] or {}), "etag": "AAAAAAAAAAE="}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT = _handle

            def log_message(self, *args: Any) -> None:
                pass

        cert, key = folder / "hub.pem", folder / "hub.key"
        _self_signed(cert, key)
        self.ca = cert
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def connection_string(self) -> str:
        host, port = self.server.server_address[:2]
        return f"HostName={host}:{port};SharedAccessKeyName=iothubowner;SharedAccessKey={SAS_KEY}"


def _self_signed(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edge_ws: Workspace) -> Iterator[RecordingHub]:
    recording = RecordingHub(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(recording.ca))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    edge_ws.set_secret("iothub", recording.connection_string)
    yield recording
    recording.server.shutdown()
    recording.server.server_close()


def _sas(request: dict[str, Any]) -> dict[str, str]:
    auth = request["headers"]["Authorization"]
    assert auth.startswith("SharedAccessSignature ")
    return dict(part.split("=", 1) for part in auth.removeprefix("SharedAccessSignature ").split("&"))


def test_one_device_gets_our_modules_content(edge_ws: Workspace, hub: RecordingHub) -> None:
    done = edge_ws.deploy_edge_module("iris-edge", "edge-img:1", device_id="dev-1", hub_connection_secret="iothub")
    (request,) = hub.requests
    assert (request["method"], request["path"]) == ("POST", "/devices/dev-1/applyConfigurationContent")
    assert request["query"]["api-version"] == ["2021-04-12"]
    assert request["body"] == {"modulesContent": done["manifest"]["modulesContent"]}
    module = request["body"]["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["iris-edge"]
    assert module["settings"]["image"] == REFERENCE
    sas = _sas(request)
    assert sas["skn"] == "iothubowner" and sas["sig"] and urllib.parse.unquote(sas["sr"]).startswith("127.0.0.1")
    assert done["applied"] == {"device_id": "dev-1"}
    assert done["key"] not in json.dumps(request["body"])
    # The connection string is nowhere but in the vault.
    assert SAS_KEY not in json.dumps(done) and "iothub" in edge_ws.list_secrets()


def test_a_device_group_gets_an_automatic_deployment(edge_ws: Workspace, hub: RecordingHub) -> None:
    done = edge_ws.deploy_edge_module(
        "iris-edge", "edge-img", target_condition="tags.site='plant-7'", configuration_id="iris-edge-v1",
        priority=20, hub_connection_secret="iothub")
    (request,) = hub.requests
    assert (request["method"], request["path"]) == ("PUT", "/configurations/iris-edge-v1")
    assert request["query"]["api-version"] == ["2021-04-12"]
    body = request["body"]
    assert body["content"] == {"modulesContent": done["manifest"]["modulesContent"]}
    assert (body["id"], body["targetCondition"], body["priority"]) == ("iris-edge-v1", "tags.site='plant-7'", 20)
    assert _sas(request)["skn"] == "iothubowner"
    assert done["applied"]["etag"] == "AAAAAAAAAAE="


def test_the_hubs_refusal_and_bad_targets_are_clear_errors(edge_ws: Workspace, hub: RecordingHub) -> None:
    hub.status = 401
    with pytest.raises(DeploymentError, match="IoT Hub refused the edge deployment: HTTP 401"):
        edge_ws.deploy_edge_module("iris-edge", "edge-img:1", device_id="dev-1", hub_connection_secret="iothub")
    with pytest.raises(ValidationError, match="exactly one of device_id= or target_condition="):
        edge_ws.deploy_edge_module("iris-edge", "edge-img:1", hub_connection_secret="iothub")
    with pytest.raises(ValidationError, match="needs a configuration id"):
        edge_ws.deploy_edge_module("iris-edge", "edge-img:1", target_condition="*", hub_connection_secret="iothub")
    assert len(hub.requests) == 1  # the bad targets were refused before any request
