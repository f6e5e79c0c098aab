"""Address and URL policy for user-supplied URIs (SSRF guard, architecture.md step 2).

The rule: a URL is fetched only when its scheme is http(s), its host is allow-listed, and *every*
address the host resolves to is a public unicast address. The vetted address is what the
connection uses (:class:`VettedTarget`), so a DNS answer that changes between the check and the
connect (rebinding) cannot redirect us. Redirects are re-validated hop by hop by the caller.

Cloud metadata endpoints are refused even with ``allow_private_addresses=True``: no test or
on-prem store needs them, and they are the classic SSRF prize.
"""

from __future__ import annotations

import ipaddress
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from dupwatch.errors import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> [ip, ...]``; injectable for tests. The default uses ``getaddrinfo``."""

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::253",
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
ALLOWED_SCHEMES = ("http", "https")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv6 one (mapped, 6to4, Teredo, NAT64, compatible), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``ip`` may not be contacted (a short phrase), or ``None`` when it may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    inner = embedded_ipv4(ip)
    if inner is not None:
        problem = address_problem(inner, allow_private=allow_private)
        if problem is not None:
            return f"{problem} (embedded in {ip})"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "the unspecified address"
    if allow_private:
        return None
    for attr, words in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attr):
            return words
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if not ip.is_global:
        return "a non-global address"
    return None


def host_allowed(host: str, allow_hosts: list[str] | tuple[str, ...]) -> bool:
    """Exact match, or ``*.suffix`` matching sub-domains of ``suffix`` (not ``suffix`` itself)."""
    host = host.lower().rstrip(".")
    for pattern in allow_hosts:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _looks_numeric(host: str) -> bool:
    """Hosts like ``2130706433``, ``0x7f.1``, ``017700000001``: inet_aton forms we never accept."""
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return all(part.isdigit() or part.lower().startswith("0x") for part in host.split(".") if part)
    return True


def default_resolver(host: str, port: int) -> list[str]:
    """All addresses of ``host`` (A and AAAA); NXDOMAIN is permanent, other DNS trouble transient."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise PermanentError(f"host {host!r} does not resolve", reason="host_not_found") from None
        raise TransientError(f"DNS lookup of {host!r} failed: {exc}", reason="dns_unavailable") from None
    except (UnicodeError, ValueError) as exc:
        raise PermanentError(f"host {host!r} is not a valid name: {exc}", reason="url_invalid") from None
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class VettedTarget:
    """A URL that passed the policy, with the address to connect to (never re-resolved)."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    """Path and query as sent in the request line."""
    ip: str


def vet_url(
    url: str,
    *,
    allow_hosts: list[str] | tuple[str, ...],
    allow_private: bool,
    resolver: Resolver = default_resolver,
) -> VettedTarget:
    """Check ``url`` against the policy and pick the address to connect to.

    Raises :class:`PermanentError` with ``url_invalid``, ``url_scheme_not_allowed``,
    ``host_not_allowed``, ``address_not_allowed`` or ``host_not_found``.
    """
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url) or "\\" in url:
        raise PermanentError("URL contains whitespace, control characters or backslashes", reason="url_invalid")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise PermanentError(f"URL is malformed: {exc}", reason="url_invalid") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise PermanentError(f"URL scheme {scheme[:20]!r} is not allowed (http, https only)", reason="url_scheme_not_allowed")
    if not host:
        raise PermanentError("URL has no host", reason="url_invalid")
    if parts.username is not None or parts.password is not None:
        raise PermanentError("URLs with credentials are not accepted", reason="url_invalid")
    host = host.rstrip(".")
    if "%" in host:
        raise PermanentError("IPv6 zone ids are not accepted in URLs", reason="url_invalid")
    literal = _literal_ip(host)
    if literal is None and _looks_numeric(host):
        raise PermanentError(f"host {host!r} is a non-canonical numeric address", reason="address_not_allowed")
    if not host_allowed(host, allow_hosts):
        raise PermanentError(f"host {host!r} is not in sources.http_allow_hosts", reason="host_not_allowed")
    port = port or (443 if scheme == "https" else 80)
    addresses = [str(literal)] if literal is not None else resolver(host, port)
    if not addresses:
        raise PermanentError(f"host {host!r} has no addresses", reason="host_not_found")
    for raw in addresses:
        ip = _literal_ip(raw.split("%", 1)[0])
        if ip is None:
            raise PermanentError(f"host {host!r} resolved to a malformed address {raw!r}", reason="address_not_allowed")
        problem = address_problem(ip, allow_private=allow_private)
        if problem is not None:
            # One bad answer refuses the host: an attacker controls which answer a retry would get.
            raise PermanentError(f"host {host!r} resolves to {ip}, {problem}", reason="address_not_allowed")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return VettedTarget(url=url, scheme=scheme, host=host, port=port, path=path, ip=addresses[0].split("%", 1)[0])


def resolve_local_path(uri: str, roots: list[Path] | tuple[Path, ...]) -> Path:
    """The real path of a local ``uri`` (plain path or ``file://``) if it lies below one of ``roots``.

    Symlinks are resolved before the check, so a link out of a root is refused. Raises
    ``PermanentError`` with ``path_not_allowed`` or ``source_not_found``.
    """
    if "\x00" in uri:
        raise PermanentError("path contains a NUL byte", reason="path_not_allowed")
    if uri.lower().startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise PermanentError("file:// URIs must name a local absolute path", reason="path_not_allowed")
        raw = unquote(parts.path)
        if "\x00" in raw:
            raise PermanentError("path contains a NUL byte", reason="path_not_allowed")
    elif "://" in uri or uri.lower().split(":", 1)[0] in {"data", "javascript", "mailto"}:
        raise PermanentError(f"URI scheme of {uri[:40]!r} is not allowed", reason="url_scheme_not_allowed")
    else:
        raw = uri
    if not roots:
        raise PermanentError("local paths are refused: sources.local_roots is empty", reason="path_not_allowed")
    candidate = Path(raw)
    if not candidate.is_absolute():
        raise PermanentError(f"local path {raw[:200]!r} must be absolute", reason="path_not_allowed")
    try:
        real = candidate.resolve(strict=False)
        real_roots = [Path(root).resolve(strict=False) for root in roots]
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise PermanentError(f"cannot resolve {raw[:200]!r}: {exc}", reason="path_not_allowed") from None
    if not any(real == root or real.is_relative_to(root) for root in real_roots):
        raise PermanentError(f"path {raw[:200]!r} is outside sources.local_roots", reason="path_not_allowed")
    try:
        info = real.stat()
    except FileNotFoundError:
        raise PermanentError(f"no such file: {raw[:200]!r}", reason="source_not_found") from None
    except OSError as exc:
        raise PermanentError(f"cannot stat {raw[:200]!r}: {exc.strerror}", reason="source_not_found") from None
    if not stat.S_ISREG(info.st_mode):
        raise PermanentError(f"{raw[:200]!r} is not a regular file", reason="path_not_allowed")
    return real
