"""A TCP proxy between a client and a real redis-server that plays the network for tests.

`hang()` makes every connection open at that moment swallow what Redis answers, as a half-open connection
does (a primary gone without a reset, a dropped NAT entry); connections opened later work. `reset_on`: a
request holding those bytes resets its client's connection (RST), as a crashed or killed peer does.
"""

from __future__ import annotations

import socket
import struct
import threading


class RedisProxy:
    """Forwards TCP to Redis at `target`; `port` is where clients connect."""

    def __init__(self, target: tuple[str, int], *, reset_on: bytes | None = None) -> None:
        self._target = target
        self._reset_on = reset_on
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[threading.Event] = []
        self._sockets: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        with self._lock:
            for silenced in self._open:
                silenced.set()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            silenced = threading.Event()
            with self._lock:
                self._open.append(silenced)
                self._sockets += [client, upstream]
                self.accepted += 1
            threading.Thread(target=_pump, args=(client, upstream, threading.Event(), self._reset_on),
                             daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client, silenced, None), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket, silenced: threading.Event, reset_on: bytes | None) -> None:
    """Copy bytes from `source` to `sink`; once `silenced`, read and drop them (the peer hears nothing); on
    `reset_on` in what `source` sent, reset `source` and close `sink`."""
    try:
        while data := source.recv(65536):
            if reset_on is not None and reset_on in data:
                source.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                source.close()
                sink.shutdown(socket.SHUT_RDWR)  # Redis sees it go, and the other pump ends
                sink.close()
                return
            if not silenced.is_set():
                sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)  # pass the close on
    except OSError:
        pass
