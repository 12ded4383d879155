"""The harness refuses any connection that would leave this machine."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tests.conftest import InternetAccessError


def test_public_and_private_addresses_are_refused_before_any_packet() -> None:
    for address in [("192.0.2.1", 443), ("10.0.0.1", 80)]:  # TEST-NET-1 and a private one
        with socket.socket() as sock, pytest.raises(InternetAccessError):
            sock.connect(address)


def test_public_names_are_not_resolved() -> None:
    with pytest.raises(InternetAccessError):
        socket.getaddrinfo("api.telegram.org", 443)


async def test_http_clients_are_stopped_too() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(InternetAccessError):
            await client.get("https://bot-api.zaloplatforms.com/")


async def test_loopback_is_allowed() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        _, writer = await asyncio.open_connection("localhost", port)
        writer.close()
        await writer.wait_closed()
