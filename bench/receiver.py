"""A fast webhook receiver for the benchmarks: one process serving many ports.

Records when each event arrived (by its CloudEvents id) and answers 204. ``GET /stats`` on
any port returns the count; ``GET /stats?detail=1`` also returns every arrival time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvicorn

arrivals: dict[str, float] = {}
count = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global count  # served with lifespan="off": every scope is HTTP
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "GET" and scope["path"] == "/stats":
        detail = b"detail=1" in scope.get("query_string", b"")
        out = {"count": count, **({"arrivals": arrivals} if detail else {})}
        payload = json.dumps(out).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return
    if scope["method"] == "POST" and scope["path"] == "/reset":
        arrivals.clear()
        count = 0
    elif scope["method"] == "POST":
        now = time.time()
        count += 1
        headers = dict(scope["headers"])
        event_id = headers.get(b"ce-id")
        if event_id is None:
            try:
                event_id = json.loads(body).get("id", "").encode()
            except ValueError:
                event_id = b""
        arrivals.setdefault(event_id.decode() + "|" + scope["path"], now)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def main(base_port: int, ports: int) -> None:
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=base_port + i,
                log_level="warning",
                access_log=False,
                loop="uvloop",
                http="httptools",
                lifespan="off",
            )
        )
        for i in range(ports)
    ]
    await asyncio.gather(*(s.serve() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--ports", type=int, default=1)
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.base_port, args.ports))
