"""A TCP proxy in front of a real peer that a test switches between three behaviours, as a network or a server
failing would:

- "forward": connections go through to the peer (new and existing ones);
- "refuse": the port is closed (connecting is refused, ECONNREFUSED) and open connections are cut, as when the
  server is stopped;
- "silent": the port accepts connections and nothing answers on them, new or existing (bytes sent are read
  and dropped), as a hung server or a black-holing firewall behind a live load balancer.

Connections that went silent are cut when the proxy forwards again (their protocol state is lost), as a server
that recovers drops its clients' hung sessions. Threads only; every thread is a daemon."""

from __future__ import annotations

import contextlib
import socket
import threading

MODES = ("forward", "refuse", "silent")


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", mode: str = "forward"):
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.mode = "refuse"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: list[_Pair] = []
        self._held: list[socket.socket] = []  # connections accepted while silent
        self.waiting = 0  # of those, how many the client still holds open (it waits for an answer)
        self.set(mode)

    # --- switching --------------------------------------------------------------------------------------------
    def set(self, mode: str) -> FaultProxy:
        assert mode in MODES, mode
        with self._lock:
            previous, self.mode = self.mode, mode
            if mode == "refuse":
                self._close_listener()
                victims = self._take_all()
            elif previous == "silent" and mode == "forward":
                victims = self._take_all()  # hung sessions are dropped when the server comes back
            else:
                victims = []
            if mode != "refuse" and self._listener is None:
                self._open_listener()
        for sock in victims:
            _cut(sock)
        return self

    def forward(self) -> FaultProxy:
        return self.set("forward")

    def refuse(self) -> FaultProxy:
        return self.set("refuse")

    def silent(self) -> FaultProxy:
        return self.set("silent")

    def close(self) -> None:
        self.set("refuse")

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _take_all(self) -> list[socket.socket]:
        socks = [s for pair in self._pairs for s in (pair.client, pair.upstream) if s is not None] + self._held
        self._pairs, self._held = [], []
        return socks

    def _open_listener(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"fault-proxy-{self.port}").start()

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
                if mode == "silent":
                    self._held.append(client)
                    self.waiting += 1
                    threading.Thread(target=self._drain, args=(client,), daemon=True).start()
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _cut(client)  # the peer itself is down: pass the refusal on
                continue
            pair = _Pair(self, client, upstream)
            with self._lock:
                self._pairs.append(pair)
            pair.start()


    def _drain(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
        with self._lock:
            self.waiting -= 1


class _Pair:
    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket):
        self.proxy, self.client, self.upstream = proxy, client, upstream

    def start(self) -> None:
        for src, dst in ((self.client, self.upstream), (self.upstream, self.client)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.proxy.mode == "forward":
                    dst.sendall(data)
                # silent: read and drop, so the sender's writes still complete (its kernel gets its ACKs)
        except OSError:
            pass
        finally:
            if self.proxy.mode != "silent":
                _cut(src)
                _cut(dst)




def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
