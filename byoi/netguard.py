"""The one way out to customer hosts (as healthchecks' hc/lib/curl.py).

- `resolve_allowed()` resolves a name once and refuses loopback, private, link-local, multicast, reserved,
  unspecified and cloud-metadata addresses unless the operator allow-listed them in
  settings.EGRESS_ALLOWED_NETWORKS. Literal IPs are checked without DNS.
- `connect_tcp()` and `http_client()` connect to the address that was checked (pinned), so a DNS answer that
  changes between the check and the connection (DNS rebinding) cannot reach a blocked network. HTTP keeps the
  host name for the Host header and for TLS (SNI and certificate verification), follows no redirects, ignores
  proxy variables, and always has connect and read timeouts.
- Failures become the taxonomy of byoi/errors.py through its one classifier (byoi.errors.classify), with
  plain messages that never contain a secret or a URL.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import re
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from byoi.errors import BackendError, classify

METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack…
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(host: str) -> IPAddress | None:
    """The address `host` spells literally, including the legacy IPv4 forms resolvers accept
    ("2130706433", "0x7f.1", "127.1"), so that none of them reaches DNS or escapes the check."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


_LEGACY_IPV4 = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)(\.(0[xX][0-9a-fA-F]+|[0-9]+)){0,3}")


def why_blocked(ip: IPAddress) -> str | None:
    """The kind of network `ip` is on if WizChat must not connect to it, else None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return why_blocked(ip.ipv4_mapped)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    for attribute, label in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                             ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                             ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(ip, attribute):
            return label
    if not ip.is_global:  # shared address space (100.64.0.0/10), documentation ranges…
        return "non-public"
    return None


def address_allowed(ip: IPAddress) -> bool:
    networks = getattr(settings, "EGRESS_ALLOWED_NETWORKS", [])
    if any(ip.version == net.version and ip in net for net in networks):
        return True
    return why_blocked(ip) is None


def _getaddrinfo(host: str, port: int, timeout: float) -> list[str]:
    """getaddrinfo with a deadline: a resolver that hangs must not hang the caller."""
    result: dict = {}

    def lookup():
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            result["error"] = error

    worker = threading.Thread(target=lookup, daemon=True, name="netguard-dns")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise BackendError("timeout", f"Looking up {host} took longer than {timeout:g} seconds.",
                           hint="The host name could not be resolved in time: check the DNS of this name.")
    if "error" in result:
        raise BackendError("dns", f"The host name {host} does not resolve.")
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in result["infos"]:
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    if not addresses:
        raise BackendError("dns", f"The host name {host} does not resolve.")
    return addresses


def guarded(settings: dict) -> bool:
    """Whether connections for these component settings pass the guard: always for a customer's; the
    platform's own default servers are marked `egress_guard: False` by the resolver."""
    return settings.get("egress_guard", True) is not False


def allowed_detail(host: str, addresses: list[str]) -> str:
    """What Test Connection's address step shows for the allowed `addresses` of `host`."""
    allow_listed = any(why_blocked(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses)
    note = " (allowed by the operator's network allow-list)" if allow_listed else ""
    shown = ", ".join(addresses[:3])
    return f"{shown}{note}." if parse_ip(host) is not None else f"{host} resolves to {shown}{note}."


def pinned_addresses(settings: dict, default_port: int) -> list[str]:
    """The addresses a component's connections go to: its host's allowed addresses, or none (the driver
    resolves) for the platform's own trusted defaults."""
    if not guarded(settings):
        return []
    return list(resolve_allowed(str(settings["host"]), int(settings.get("port") or default_port)))


def resolve_allowed(host: str, port: int, *, timeout: float | None = None) -> list[str]:
    """The addresses of `host` WizChat may connect to; BackendError("blocked_address") if any is refused.

    Refusing when ANY address is blocked (not only the first) stops a name that mixes a public and a
    private address from reaching the private one through a fallback."""
    host = (host or "").strip()
    if not host:
        raise BackendError("config", "The host is empty.")
    literal = parse_ip(host)
    if literal is not None:
        candidates = [str(literal)]
    else:
        candidates = _getaddrinfo(host, port, timeout or settings.BYOI_CONNECT_TIMEOUT)
    for address in candidates:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not address_allowed(ip):
            # Never the address itself nor its kind of network: the message must not tell anyone what a name
            # resolves to inside a network they cannot see.
            raise BackendError("blocked_address", f"{host} is in an address range WizChat does not connect to, "
                                                  "so the connection was refused before it was made.",
                               hint=blocked_hint())
    return candidates


def egress_sources() -> list[str]:
    """The addresses WizChat connects from (settings.EGRESS_SOURCE_ADDRESSES), as customers write them in a
    firewall rule: "203.0.113.10", "198.51.100.0/28"."""
    return [str(net.network_address) if net.num_addresses == 1 else str(net)
            for net in getattr(settings, "EGRESS_SOURCE_ADDRESSES", [])]


def blocked_hint() -> str:
    """What to do about a refused address range, naming the addresses to allow when the operator set them."""
    sources = egress_sources()
    named = f" ({', '.join(sources)})" if sources else " (ask your WizChat operator for them)"
    return (f"Use an address of your component that is reachable from WizChat's egress addresses{named} and "
            "allow exactly those in your firewall; or ask your WizChat operator to allow-list your network.")


def open_first(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """Connect to the first address that answers within `timeout` seconds in total."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return socket.create_connection((address, port), timeout=remaining)
        except OSError as error:
            last = error
    if last is None or isinstance(last, TimeoutError):
        raise TimeoutError("connect timed out")
    raise last


def connect_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to an allowed address of `host` (BackendError on any failure)."""
    return connect_addresses(host, resolve_allowed(host, port, timeout=timeout), port, timeout)


def connect_addresses(host: str, addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of `addresses` (already allowed, or the platform's own) that answers,
    named `host` in errors (BackendError on any failure)."""
    try:
        return open_first(addresses, port, timeout)
    except TimeoutError:
        raise BackendError("timeout", f"Connection to {host}:{port} did not complete within {timeout:g} seconds.") \
            from None
    except OSError as error:
        raise classify(error, host=host, port=port, timeout=timeout) from None


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("netguard_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float):
    """Bound every socket read and write of HTTP requests made inside the block to `seconds` in total.

    httpx's read timeout restarts with every packet, so a server that trickles its answer a byte at a time
    could hold a request forever; inside this block it cannot."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    end = _deadline.get()
    if end is None:
        return timeout
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise error("the operation's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname,
                                                      _bounded(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """httpcore network backend that connects only to addresses resolve_allowed() accepted.

    httpcore hands the URL's host name to connect_tcp and later uses the same name for TLS (SNI and the
    certificate check), so only the TCP connection is redirected to the checked address."""

    def __init__(self, guard: bool):
        self.guard = guard
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        timeout = timeout or settings.BYOI_CONNECT_TIMEOUT
        addresses = resolve_allowed(host, port, timeout=timeout) if self.guard else [host]
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                stream = self._backend.connect_tcp(address, port, remaining, local_address, socket_options)
                return _DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        raise last or httpcore.ConnectTimeout("connect timed out")

    def connect_unix_socket(self, *args, **kwargs):  # pragma: no cover - never for customer hosts
        raise BackendError("config", "Unix sockets are not supported.")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def ca_bundle() -> str:
    """The operator's BYOI_CA_BUNDLE ("" when unset): the one CA file every customer connection trusts."""
    return getattr(settings, "BYOI_CA_BUNDLE", "") or ""


def ssl_context() -> ssl.SSLContext:
    """The one TLS policy for customer HTTPS endpoints (the TLS step and the HTTP client agree): certificate and
    host name verified against certifi's CAs (or SSL_CERT_FILE / SSL_CERT_DIR when set) plus the operator's
    BYOI_CA_BUNDLE, the same file the PostgreSQL and FalkorDB connections trust."""
    context = httpx.create_ssl_context(trust_env=True)
    bundle = ca_bundle()
    if bundle:
        try:
            context.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError):
            raise BackendError("config", "WizChat's CA bundle (BYOI_CA_BUNDLE) cannot be read, so no certificate "
                                         "can be verified.", hint="Ask your WizChat operator to fix BYOI_CA_BUNDLE.",
                               ) from None
    return context


class PinnedTransport(httpx.HTTPTransport):
    def __init__(self, *, guard: bool = True, limits: httpx.Limits | None = None):
        # A streamed answer holds its connection until the last token: the pool must not be what caps how many
        # answers one process streams at once (10 did: the 11th stream waited a whole answer for a connection).
        # The web server's threads bound it instead.
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30)
        context = ssl_context()
        super().__init__(verify=context, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(guard),
        )


def _refuse_redirect(response: httpx.Response) -> None:
    if response.is_redirect:
        raise BackendError("protocol", f"The endpoint answered with a redirect (HTTP {response.status_code}); "
                                       "WizChat does not follow redirects. Enter the final URL of the API.")


def split_endpoint(base_url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or BackendError("config")."""
    try:
        parts = urlsplit((base_url or "").strip())
        port = parts.port
    except ValueError:
        raise BackendError("config", "The API endpoint is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise BackendError("config", "The API endpoint must start with https:// (or http://).")
    if not parts.hostname:
        raise BackendError("config", "The API endpoint has no host name.")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def http_client(base_url: str, *, timeout_connect: float, timeout_read: float, headers: dict | None = None,
                guard: bool = True) -> httpx.Client:
    """An httpx client for one customer endpoint: pinned to checked addresses, no redirects, no proxies.

    `guard=False` is only for the platform's own default servers (trusted, on loopback in development)."""
    split_endpoint(base_url)
    return httpx.Client(
        base_url=base_url,
        headers=headers or {},
        transport=PinnedTransport(guard=guard),
        timeout=httpx.Timeout(connect=timeout_connect, read=timeout_read, write=timeout_read, pool=timeout_read),
        follow_redirects=False,
        trust_env=False,
        event_hooks={"response": [_refuse_redirect]},
    )
