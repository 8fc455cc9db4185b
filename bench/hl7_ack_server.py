#!/usr/bin/env python3
"""Baseline HL7 MLLP peer for bench/hl7.sh: the Python `hl7` package's asyncio MLLP
server (hl7.mllp.start_hl7_server), answering every message with an AA built by
hl7.Message.create_ack and storing nothing.

Each message is parsed (hl7.parse) like any real receiver would; a block that cannot be
parsed is answered with a minimal AR so that the sender never waits for nothing.

    python3 bench/hl7_ack_server.py --port 2575 [--host 127.0.0.1] [--encoding utf-8]

Prints "listening on HOST:PORT" once the socket is bound (port 0 picks a free one) and
runs until SIGTERM/SIGINT. Needs `pip install hl7` (>= 0.4.5).
"""

import argparse
import asyncio
import itertools
import signal
import sys

try:
    import hl7
    from hl7.mllp import start_hl7_server
except ImportError:  # pragma: no cover - environment problem, reported clearly
    sys.exit("hl7_ack_server.py: the Python 'hl7' package is missing: pip install hl7")

_ids = itertools.count(1)


def minimal_ar(text):
    """An AR for a block hl7.parse rejected, echoing MSH-10 when it can be found."""
    control_id = ""
    first = text.split("\r", 1)[0]
    if first.startswith("MSH") and len(first) > 3:
        fields = first.split(first[3])
        if len(fields) > 9:
            control_id = fields[9]
    return "MSH|^~\\&|BASELINE||||||ACK|B{}|P|2.5\rMSA|AR|{}".format(next(_ids), control_id)


async def handle(reader, writer):
    try:
        while True:
            try:
                block = await reader.readblock()
            except asyncio.IncompleteReadError:
                break  # peer closed
            except (ValueError, hl7.mllp.InvalidBlockError) as e:
                print("hl7_ack_server.py: bad block: {}".format(e), file=sys.stderr)
                break
            text = block.decode(reader.encoding, reader.encoding_errors)
            try:
                message = hl7.parse(text)
                ack = str(message.create_ack("AA", message_id="B{}".format(next(_ids))))
            except Exception as e:  # noqa: BLE001 - any parse failure gets an AR
                print("hl7_ack_server.py: unparsable message: {}".format(e), file=sys.stderr)
                ack = minimal_ar(text)
            writer.writeblock(ack.encode(writer.encoding, writer.encoding_errors))
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--encoding", default="utf-8",
                    help="charset to decode messages and encode ACKs (default utf-8)")
    args = ap.parse_args()

    server = await start_hl7_server(handle, args.host, args.port,
                                    encoding=args.encoding, encoding_errors="replace")
    host, port = server.sockets[0].getsockname()[:2]
    print("listening on {}:{}".format(host, port), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
