"""The network steps every kind's Test Connection begins with: address allowed → TCP → TLS.

A kind names where it connects with a `where(ctx) -> (host, port)` function: `host_port(default)` for the
database kinds' Host and Port fields, `endpoint` for an OpenAI-compatible API Endpoint. The TCP step (and
the TLS step after it) connects to the addresses the address step allowed. A connection that will not be
encrypted still gets its TLS step, as a warning that says so (the spec: "Enable SSL for all connections")."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from django.conf import settings as dj

from byoi import certs, netguard
from byoi.errors import BackendError

from . import Context, Warned

Where = Callable[[Context], tuple[str, int]]


def host_port(default_port: int) -> Where:
    def where(ctx: Context) -> tuple[str, int]:
        host = str(ctx.settings.get("host") or "").strip()
        if not host:
            raise BackendError("config", "The host is empty.")
        return host, int(ctx.settings.get("port") or default_port)

    return where


def endpoint(ctx: Context) -> tuple[str, int]:
    _, host, port = netguard.split_endpoint(ctx.settings.get("endpoint") or "")
    return host, port


def address_step(where: Where):
    def address(ctx: Context) -> str:
        host, port = where(ctx)
        if not netguard.guarded(ctx.settings):
            ctx.state["addresses"] = []
            return f"{host} is a platform server."
        addresses = netguard.resolve_allowed(host, port, timeout=dj.BYOI_CONNECT_TIMEOUT)
        ctx.state["addresses"] = addresses
        return netguard.allowed_detail(host, addresses)

    return address


def open_socket(ctx: Context, where: Where) -> socket.socket:
    """A TCP connection to the first allowed address that answers (BackendError otherwise)."""
    host, port = where(ctx)
    timeout = dj.BYOI_CONNECT_TIMEOUT
    sock = netguard.connect_addresses(host, ctx.state.get("addresses") or [host], port, timeout)
    sock.settimeout(timeout)
    return sock


def tcp_step(where: Where):
    def tcp(ctx: Context) -> str:
        open_socket(ctx, where).close()
        return f"Port {where(ctx)[1]} is open."

    return tcp


def store_tls_context(verify: bool, check_hostname: bool, ca_cert: str = "") -> ssl.SSLContext:
    """The database kinds' TLS trust, as their backends use it: the component's own CA certificate when it has
    one, else BYOI_CA_BUNDLE, else the system store. (HTTPS endpoints use netguard.ssl_context(): certifi's CAs
    plus the bundle.) A customer CA that cannot verify anything (unreadable, expired) is a "tls" failure."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_cert:
        problem = certs.problem(ca_cert)
        if problem:
            raise BackendError("tls", problem, hint="Paste the current certificate of the CA that signed your "
                                                    "server's certificate, or remove it to use WizChat's CAs.")
        return certs.ssl_context(ca_cert, check_hostname=check_hostname)
    bundle = netguard.ca_bundle()
    if bundle:
        context = ssl.create_default_context(cafile=bundle)
    context.check_hostname = check_hostname
    return context


def unencrypted(why: str) -> Warned:
    """The TLS step of a connection that will not be encrypted."""
    return Warned(f"Not encrypted: {why}")


def trusted_by(ca_cert: str) -> str:
    """Who must have signed the server's certificate, for the TLS messages."""
    return f"your CA certificate ({certs.describe(ca_cert)})" if ca_cert else "a CA WizChat trusts"


def tls_handshake(sock: socket.socket, host: str, context: ssl.SSLContext, *,
                  plain: str = "Turn SSL off for a plain server, or use the TLS port.", ca_cert: str = "") -> str:
    """Complete a TLS handshake on `sock` (closed afterwards); returns the step's detail line, or raises
    BackendError("tls"). `plain` says what to do when the server does not speak TLS at all; `ca_cert` is the
    component's own CA certificate, if the context trusts it."""
    try:
        tls = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        sock.close()
        reason = (error.verify_message or "not trusted").rstrip(".")
        if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
            raise BackendError("tls", f"The server's certificate is not valid for {host!r} ({reason}): connect "
                                      "with a name the certificate lists.") from None
        raise BackendError("tls", f"The server's certificate was rejected: {reason}. Check that it is signed by "
                                  f"{trusted_by(ca_cert)}.") from None
    except ssl.SSLError as error:
        sock.close()
        raise BackendError("tls", f"The TLS handshake failed ({error.reason or 'SSL error'}): the server may not "
                                  "speak TLS on this port.") from None
    except TimeoutError:
        sock.close()
        # TCP connected a moment ago: a server that stays silent through a handshake does not speak TLS here.
        raise BackendError("tls", f"The server did not answer the TLS handshake: it probably does not speak TLS on "
                                  f"this port. {plain}") from None
    except OSError:
        sock.close()
        raise BackendError("tls", "The server closed the connection during the TLS handshake.") from None
    try:
        version = tls.version() or "TLS"
    finally:
        tls.close()
    if context.verify_mode == ssl.CERT_NONE:
        return f"{version} (the certificate is not verified in this mode)."
    if context.check_hostname:
        signer = f"signed by {trusted_by(ca_cert)}" if ca_cert else "trusted"
        return f"{version}; the certificate is {signer} and valid for {host}."
    return f"{version}; the certificate is signed by {trusted_by(ca_cert) if ca_cert else 'a trusted CA'} " \
           "(host name not checked in this mode)."
