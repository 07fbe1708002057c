"""Serve a bare asyncio UDP echo on loopback: the floor of a Python datagram server.

Started by ``requests.py``, which times it with the same client
processes as the CoAP servers. It prints its port on the first line of
standard output, then echoes every datagram back to its sender until it
is terminated. No DTLS and no CoAP: what it costs per request is what
asyncio's datagram transport and the system calls alone cost.
"""

from __future__ import annotations

import asyncio
from typing import cast


class Echo(asyncio.DatagramProtocol):
    """A datagram protocol that sends each datagram back to its sender."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def serve() -> None:
    """Bind a free loopback port, print it and echo until cancelled."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        Echo, local_addr=("127.0.0.1", 0)
    )
    print(transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve())
