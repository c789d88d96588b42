"""Envoy's ``x-forwarded-client-cert`` (XFCC): the client certificate of an mTLS connection Envoy ended.

The header is only believed when the TCP peer (ASGI ``scope["client"]``) is one of the configured proxy
CIDRs; from anyone else it is ignored, since any client can send it. Envoy appends one element per hop
(``forward_client_cert_details: APPEND_FORWARD``) or replaces the header (``SANITIZE_SET``); either way the
*last* element describes the peer of the proxy that talked to us, so only that one is used.

Grammar (Envoy docs): elements separated by ``,``; ``key=value`` pairs separated by ``;``; a value may be
double-quoted (then ``,``/``;``/``=`` are literal and ``\\"`` is a quote). Keys: By, Hash, Cert, Chain,
Subject, URI, DNS (DNS may repeat).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable

import msgspec

MAX_XFCC_CHARS = 16_384
_TRUST_CACHE_SIZE = 1024


class XfccError(ValueError):
    """The header does not follow the XFCC grammar."""


class ClientCert(msgspec.Struct, frozen=True):
    hash: str | None = None  # hex SHA-256 of the DER certificate
    subject: str | None = None
    uri: str | None = None
    dns: tuple[str, ...] = ()
    by: str | None = None

    @property
    def identity(self) -> str:
        """A stable name for the client: SAN URI (e.g. SPIFFE), else subject DN, else the cert hash."""
        if self.uri:
            return self.uri
        if self.subject:
            return self.subject
        if self.dns:
            return self.dns[0]
        return f"sha256:{self.hash}"

    @property
    def x5t_s256(self) -> str | None:
        """The RFC 8705 ``cnf.x5t#S256`` thumbprint (base64url SHA-256) of this certificate."""
        if not self.hash:
            return None
        try:
            raw = bytes.fromhex(self.hash)
        except ValueError:
            return None
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes, keeping quotes and escapes for the next stage."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quoted:
        raise XfccError("unterminated quoted value")
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        out: list[str] = []
        escaped = False
        for ch in value[1:-1]:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return value


def parse_xfcc(header: str) -> list[list[tuple[str, str]]]:
    """All elements of the header, each a list of ``(key, value)`` pairs (keys lower-cased)."""
    if len(header) > MAX_XFCC_CHARS:
        raise XfccError("header too long")
    elements = []
    for element in _split(header, ","):
        if not element.strip():
            continue
        pairs = []
        for pair in _split(element, ";"):
            if not pair.strip():
                continue
            key, sep, value = pair.partition("=")
            if not sep:
                raise XfccError(f"pair without '=': {pair.strip()[:40]!r}")
            pairs.append((key.strip().lower(), _unquote(value)))
        elements.append(pairs)
    return elements


def client_cert(header: str) -> ClientCert | None:
    """The certificate of the nearest hop (the last element), or None if it names no certificate."""
    elements = parse_xfcc(header)
    if not elements:
        return None
    fields: dict[str, str] = {}
    dns: list[str] = []
    for key, value in elements[-1]:
        if key == "dns":
            dns.append(value)
        else:
            fields.setdefault(key, value)
    cert = ClientCert(
        hash=fields.get("hash", "").lower() or None,
        subject=fields.get("subject") or None,
        uri=fields.get("uri") or None,
        dns=tuple(dns),
        by=fields.get("by") or None,
    )
    if not (cert.hash or cert.subject or cert.uri or cert.dns):
        return None
    return cert


class ProxyTrust:
    """Is a peer address one of the trusted proxies? Answers are cached per address (bounded)."""

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self._networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, host: str) -> bool:
        known = self._cache.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            answer = False
        else:
            mapped = getattr(address, "ipv4_mapped", None)
            candidates = (address, mapped) if mapped is not None else (address,)
            answer = any(a in net for a in candidates for net in self._networks if a.version == net.version)
        if len(self._cache) >= _TRUST_CACHE_SIZE:
            self._cache.clear()
        self._cache[host] = answer
        return answer
