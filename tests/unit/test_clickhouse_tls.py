"""An ``https://`` ClickHouse URL is spoken over TLS, whatever its port."""

import socket
import threading

import pytest

from ragops_analytics.server_store import ServerStore
from ragops_analytics.store import StoreUnavailable

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello


def _first_byte_sent_to(url: str) -> int:
    """Open a store on ``url`` (``{port}``: a local listener's) and return the first byte the
    client sends there. The listener hangs up and stops listening, so the store fails at once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received: list[bytes] = []

    def first_byte() -> None:
        connection, _ = server.accept()
        server.close()  # retries are refused instead of waiting for a reply
        with connection:
            received.append(connection.recv(1))

    thread = threading.Thread(target=first_byte)
    thread.start()
    with pytest.raises(StoreUnavailable):
        ServerStore(url.format(port=server.getsockname()[1]))
    thread.join()
    return received[0][0]


def test_an_https_url_speaks_tls_on_any_port() -> None:
    assert _first_byte_sent_to("https://user:secret@127.0.0.1:{port}/ragops") == TLS_HANDSHAKE


def test_an_http_url_speaks_plain_http() -> None:
    assert _first_byte_sent_to("http://user:secret@127.0.0.1:{port}/ragops") != TLS_HANDSHAKE
