"""A real WebSocket server and client (PyPI `websockets`) with the gateway between them.

`websocket_pair.py server PORT`: an echo server on 127.0.0.1:PORT that answers every message
with "echo: " + message and, on the message "bye", closes with code 4001. Prints READY.
`websocket_pair.py client URL [N]`: N times (default 1), connects to URL (the gateway), sends
three text messages and a binary one, reads the echoes, sends "bye", waits for the server's
close, and prints what it saw as one JSON line.
`websocket_pair.py hold URL`: connects, exchanges one message, prints READY, and waits until
the connection ends (then prints CLOSED)."""
import asyncio
import json
import sys

import websockets


async def serve(port):
    async def echo(ws):
        async for message in ws:
            if message == "bye":
                await ws.close(code=4001, reason="server says bye")
                return
            if isinstance(message, bytes):
                await ws.send(b"echo: " + message)
            else:
                await ws.send("echo: " + message)

    async with websockets.serve(echo, "127.0.0.1", port, max_size=2**24):
        sys.stderr.write("READY\n")
        sys.stderr.flush()
        await asyncio.Future()


async def client(url):
    seen = {"echoes": []}
    async with websockets.connect(url, max_size=2**24, additional_headers={"Authorization": "Bearer ws-secret-do-not-trace"}) as ws:
        seen["subprotocol"] = ws.subprotocol
        for m in ["hello", "realtime", "x" * 70000]:
            await ws.send(m)
            seen["echoes"].append(len(await ws.recv()))
        await ws.send(b"\x00\x01\x02")
        seen["binary"] = list(await ws.recv())
        await ws.send("bye")
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            seen["close_code"] = e.rcvd.code if e.rcvd else None
    print(json.dumps(seen), flush=True)


async def hold(url):
    """Connects, exchanges one message, prints READY, then waits for the connection to end."""
    async with websockets.connect(url) as ws:
        await ws.send("hi")
        await ws.recv()
        print("READY", flush=True)
        try:
            await ws.recv()
        except websockets.ConnectionClosed:
            print("CLOSED", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
    elif sys.argv[1] == "hold":
        asyncio.run(hold(sys.argv[2]))
    else:
        for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
            asyncio.run(client(sys.argv[2]))
