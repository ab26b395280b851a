"""Where a webhook may be sent: public addresses only, checked when it is saved and at every delivery.

A webhook URL is chosen by an organisation admin, so it must never steer the service
at itself or its network (server-side request forgery): not `https://127.1:8443/`,
`https://0177.0.0.1/`, `https://2130706433/`, `https://localhost./`, `[::ffff:127.0.0.1]`,
the cloud metadata address, nor a public name whose DNS answers 127.0.0.1 (or
answers a public address when checked and a private one when used: DNS rebinding).

- When saved (`url_refusal`): https only, a host and no user name or password; an
  IP literal in any spelling the C resolver accepts (short, octal, hexadecimal,
  decimal) must be a public address written in the usual form; a name must not be
  `localhost` or a special-use or single-label name.
- At every delivery (`resolve_checked`): the name is resolved once and every
  address it gives must be public: not loopback, private, shared (100.64/10),
  link-local, multicast, reserved or unspecified, IPv4 and IPv6 alike, including an
  IPv4 address carried in IPv6 (IPv4-mapped, 6to4, Teredo, NAT64). The connection is
  then made to those checked addresses (`post_pinned`), never by resolving again,
  while TLS (SNI and the certificate check) and the Host header keep the name. No
  redirect is followed: `http.client` follows none, and a 3xx is a failed delivery.

`allow_loopback` (setting `REUNITE_WEBHOOK_ALLOW_LOOPBACK`, off by default, refused
in production) lets deliveries reach a receiver on this machine, over plain http
too; only the tests and local development need it.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FORBIDDEN_ADDRESS = "forbidden_address"  # the failure code of a delivery refused here
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Names that never belong to a public receiver (RFC 6761, 6762, 8375 and ICANN's private-use .internal).
SPECIAL_USE_SUFFIXES = (
    "localhost",
    "local",
    "internal",
    "home.arpa",
    "arpa",
    "test",
    "invalid",
    "lan",
    "intranet",
    "corp",
    "localdomain",
)
# Every spelling of an IPv4 address that inet_aton accepts: 1 to 4 parts, decimal, octal or hexadecimal.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")


class ForbiddenAddress(Exception):
    """The webhook's host is, or resolves to, an address the service must not connect to."""


# --- the address rule ------------------------------------------------------------------------


def address_allowed(address: IPAddress, *, allow_loopback: bool = False) -> bool:
    """Public (with any IPv4 address it carries), or loopback where that is allowed."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # the IPv4 address itself, in IPv6 clothes
    carried = _carried_ipv4(address)
    if allow_loopback and (address.is_loopback or (carried is not None and carried.is_loopback)):
        return True
    return _public(address) and (carried is None or _public(carried))


def _public(address: IPAddress) -> bool:
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def _carried_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside a 6to4, Teredo (its client) or NAT64 IPv6 address."""
    if address.version == 4:
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


# --- when the webhook is saved -----------------------------------------------------------------


def url_refusal(url: str) -> str | None:
    """Why this webhook URL cannot be saved, in a sentence; None if it may be (checked again when used)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return "The webhook must be an https:// address with a host name and no user name or password."
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme != "https" or not host or parts.username is not None or parts.password is not None:
        return "The webhook must be an https:// address with a host name and no user name or password."
    literal = _ip_literal(host)
    if literal is None:
        if (
            "." not in host
            or host == "localhost"
            or host.endswith(tuple(f".{s}" for s in SPECIAL_USE_SUFFIXES))
            or host in SPECIAL_USE_SUFFIXES
        ):
            return "The webhook must point at a public host name."
        return None
    if str(literal) != host or not address_allowed(literal):
        return "The webhook must point at a public address."
    return None


def _ip_literal(host: str) -> IPAddress | None:
    """The address a host names by number, in any spelling (127.1, 0177.0.0.1, 0x7f000001, ::1)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return ipaddress.IPv4Address(0)  # a number too large for an address: refused like 0.0.0.0
    return None


# --- at every delivery -------------------------------------------------------------------------


def resolve_checked(host: str, port: int, *, allow_loopback: bool = False) -> list[str]:
    """Every address `host` resolves to, once; ForbiddenAddress if any is not allowed (socket.gaierror if none)."""
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    for address in addresses:
        if not address_allowed(ipaddress.ip_address(address.split("%")[0]), allow_loopback=allow_loopback):
            raise ForbiddenAddress()
    return addresses


def post_pinned(url: str, *, body: bytes, headers: dict[str, str], timeout: float, allow_loopback: bool = False) -> int:
    """POST to `url` through its checked addresses only; the answer's status (its body is never read).

    Raises ForbiddenAddress, ValueError (a URL that is not https, or http to a public
    address), socket.gaierror, OSError (refused, timeout, TLS) or http.client.HTTPException.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        raise ValueError("not an http(s) URL")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    addresses = resolve_checked(host, port, allow_loopback=allow_loopback)
    if not secure and not (
        allow_loopback and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    ):
        raise ValueError("plain http is for a loopback test receiver only")
    connection_class = _PinnedHTTPSConnection if secure else _PinnedHTTPConnection
    connection = connection_class(host, port, addresses=addresses, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def tls_context() -> ssl.SSLContext:
    """Certificates checked against the system's CAs and the webhook's host name."""
    return ssl.create_default_context()


def _connect_to_one_of(addresses: list[str], port: int, timeout: float | None) -> socket.socket:
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as failed:
            error = failed
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked addresses; the Host header still names the webhook's host."""

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        self.sock = _connect_to_one_of(self.addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As `_PinnedHTTPConnection`, with TLS for the webhook's host name (SNI and certificate)."""

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float):
        self.context = tls_context()
        super().__init__(host, port, timeout=timeout, context=self.context)
        self.addresses = addresses

    def connect(self) -> None:
        plain = _connect_to_one_of(self.addresses, self.port, self.timeout)
        try:
            self.sock = self.context.wrap_socket(plain, server_hostname=self.host)
        except BaseException:
            plain.close()
            raise
