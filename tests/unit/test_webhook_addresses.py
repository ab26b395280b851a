"""Webhooks go to public addresses only, however the address is spelt or resolved (no SSRF).

Everything here runs with the loopback setting off (the default), except the pinning
test, whose receiver has to listen on this machine: it shows that the connection goes
to the address that was checked, under the webhook's own name (SNI, certificate, Host),
with one resolution only. "Nothing connected" is seen by a listening socket that must
have no connection waiting.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.organisations.service import webhook_url_refusal
from service.reviews import webhook_address, webhooks
from service.reviews.webhook_address import address_allowed, url_refusal
from service.settings import Settings
from tests.support.webhooks import ServedInThread

NAME = "hooks.example.org"
TIMEOUT = 2.0

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo for 127.0.0.1
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "2606:2800:220:1:248:1893:25c8:1946",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.216.34",
    "2002:5db8:d822::1",
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_every_address_that_is_not_public_is_refused(address):
    assert not address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert address_allowed(ipaddress.ip_address(address))


def test_only_the_loopback_setting_admits_loopback_and_nothing_else():
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert address_allowed(ipaddress.ip_address(address), allow_loopback=True)
    for address in ("10.0.0.1", "169.254.169.254", "fe80::1", "0.0.0.0"):
        assert not address_allowed(ipaddress.ip_address(address), allow_loopback=True)
    assert Settings().webhook_allow_loopback is False
    with pytest.raises(ValueError, match="WEBHOOK_ALLOW_LOOPBACK"):  # InsecureSettings, as pydantic reports it
        Settings(
            environment="production",
            secret_key="p" * 48,
            database_url="sqlite://",
            webhook_allow_loopback=True,
            master_key="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1:8443/x",
        "https://0177.0.0.1/x",
        "https://2130706433/x",
        "https://0x7f.0.0.1/x",
        "https://0x7f000001/x",
        "https://127.0.0.1./x",
        "https://localhost./x",
        "https://LOCALHOST/x",
        "https://printer.local/x",
        "https://db.internal./x",
        "https://router.home.arpa/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:7f00:1]/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/x",
        "https://0/x",
        "https://99999999999/x",
        "http://hooks.example.org/x",
        "https://user@hooks.example.org/x",
        "https://hooks.example.org:99999/x",
        "file:///etc/passwd",
        "https:///x",
        "https://8.8.8.010/x",  # a public address, but spelt in octal: only the usual form is accepted
    ],
)
def test_obviously_bad_webhooks_are_refused_when_saved(url):
    assert url_refusal(url) is not None
    assert webhook_url_refusal(url) == url_refusal(url)  # what the organisation admin's PUT calls


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.org/reunite",
        "https://hooks.example.org:8443/x?a=1",
        "https://93.184.216.34/x",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/x",
    ],
)
def test_public_webhooks_can_be_saved(url):
    assert url_refusal(url) is None


# --- at delivery: nothing connects to a forbidden address -------------------------------------------


@pytest.fixture
def listener():
    """A port on 127.0.0.1 that notices any connection made to it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server


def connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            accepted, _ = server.accept()
        except BlockingIOError:
            return count
        accepted.close()
        count += 1


@pytest.fixture
def dns(monkeypatch):
    """Answers for made-up public names (every other name resolves as usual); counts the questions."""
    answers: dict[str, list[str]] = {}
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host in answers:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(webhook_address.socket, "getaddrinfo", getaddrinfo)
    return answers, asked


def test_delivery_never_connects_to_a_loopback_address_however_it_is_spelt_or_resolved(listener, dns):
    port = listener.getsockname()[1]
    answers, _ = dns
    answers[NAME] = ["127.0.0.1"]  # a public name whose DNS answers loopback
    answers["mixed.example.org"] = ["93.184.216.34", "127.0.0.1"]  # one bad address spoils the answer
    for host in (
        "127.1",
        "0177.0.0.1",
        "2130706433",
        "0x7f.0.0.1",
        "localhost.",
        "localhost",
        "[::ffff:127.0.0.1]",
        "127.0.0.1",
        NAME,
        "mixed.example.org",
    ):
        for scheme in ("https", "http"):
            failure = webhooks.post_signed(
                f"{scheme}://{host}:{port}/x", secret="s", body=b"{}", delivery_id=1, timeout=TIMEOUT
            )
            # Some resolvers do not know "localhost." at all: then it fails as unknown, connecting nowhere too.
            assert failure in (("forbidden_address", "dns") if host == "localhost." else ("forbidden_address",)), (
                scheme,
                host,
                failure,
            )
    assert connections(listener) == 0


def test_plain_http_is_refused_even_to_a_public_address(dns):
    answers, _ = dns
    answers[NAME] = ["93.184.216.34"]
    assert (
        webhooks.post_signed(
            f"http://{NAME}/x", secret="s", body=b"{}", delivery_id=1, timeout=TIMEOUT, allow_loopback=True
        )
        == "bad_url"
    )


# --- pinning: the checked address, under the webhook's name --------------------------------------------


def certificate_for(name: str, tmp_path) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class TlsReceiver(ServedInThread):
    """An https receiver on 127.0.0.1 with a certificate for `name`; keeps each request's SNI and headers."""

    def __init__(self, cert_file, key_file, script: list[tuple[int, dict]]):
        self.received, self.server_names, self.script = [], [], list(script)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(dict(self.headers))
                status, headers = receiver.script.pop(0) if receiver.script else (204, {})
                self.send_response(status)
                for header, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(header, value)
                self.end_headers()

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.sni_callback = lambda connection, server_name, _: self.server_names.append(server_name)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.serve(server)
        self.port = self.server.server_address[1]


def test_delivery_connects_to_the_checked_address_under_the_webhook_name_and_follows_no_redirect(
    tmp_path, dns, monkeypatch
):
    cert_file, key_file = certificate_for(NAME, tmp_path)
    monkeypatch.setattr(webhook_address, "tls_context", lambda: ssl.create_default_context(cafile=str(cert_file)))
    answers, asked = dns
    answers[NAME] = ["127.0.0.1"]  # the receiver; a second resolution (rebinding) would be noticed below
    elsewhere = f"https://{NAME}:1/elsewhere"
    with TlsReceiver(cert_file, key_file, [(204, {}), (302, {"Location": elsewhere})]) as receiver:
        for expected in (None, "http_302"):
            assert (
                webhooks.post_signed(
                    f"https://{NAME}:{receiver.port}/reunite",
                    secret="s",
                    body=b"{}",
                    delivery_id=7,
                    timeout=TIMEOUT,
                    allow_loopback=True,
                )
                == expected
            )
    # One resolution of the name per attempt, never a second one to connect (the socket is opened on the
    # checked number, whose lookup asks no DNS server).
    assert [host for host in asked if host != "127.0.0.1"] == [NAME, NAME]
    assert receiver.server_names == [NAME, NAME]  # SNI: the name, not the address
    assert [headers["Host"] for headers in receiver.received] == [f"{NAME}:{receiver.port}"] * 2  # no redirect


def test_a_certificate_for_another_name_fails_the_delivery(tmp_path, dns, monkeypatch):
    cert_file, key_file = certificate_for("other.example.org", tmp_path)
    monkeypatch.setattr(webhook_address, "tls_context", lambda: ssl.create_default_context(cafile=str(cert_file)))
    answers, _ = dns
    answers[NAME] = ["127.0.0.1"]
    with TlsReceiver(cert_file, key_file, []) as receiver:
        assert (
            webhooks.post_signed(
                f"https://{NAME}:{receiver.port}/x",
                secret="s",
                body=b"{}",
                delivery_id=1,
                timeout=TIMEOUT,
                allow_loopback=True,
            )
            == "tls"
        )
    assert receiver.received == []
