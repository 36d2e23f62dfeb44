"""A small TCP proxy on 127.0.0.1 that tests move (``switch``) or hold (``hold``): an address
that moves as DNS or a virtual IP would, or a server that stops answering with its connections open."""
from __future__ import annotations

import socket
import threading
import time


class SwitchingProxy:
    """A TCP proxy on 127.0.0.1, standing for an address that moves (DNS, a virtual IP).

    Each accepted connection is joined to the target of the moment; ``switch(port)`` moves the
    target for new connections only (existing ones keep going to the old server). ``hold()``
    stops forwarding in both directions (bytes wait) until ``release()``. Threads only: one
    accepting, two per connection."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def switch(self, port: int) -> None:
        with self._lock:
            self._target = port

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            downstream.settimeout(None)
            with self._lock:
                target = self._target
            try:
                upstream = socket.create_connection(("127.0.0.1", target), timeout=1.0)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [downstream, upstream]
                self.accepted += 1
            if self._closed.is_set():
                self._shutdown(downstream, upstream)
                return
            self._spawn(self._pump, downstream, upstream)
            self._spawn(self._pump, upstream, downstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while not self._flowing.wait(0.05):
                    if self._closed.is_set():
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._shutdown(source, sink)

    @staticmethod
    def _shutdown(*sockets: socket.socket) -> None:
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        self._shutdown(*sockets)
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sock in sockets:
            sock.close()
        assert not [thread for thread in self._threads if thread.is_alive()], "proxy threads still running"
