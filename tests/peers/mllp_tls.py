#!/usr/bin/env python3
"""Sends one HL7 message over MLLP on TLS with Python's ssl module and prints MSA-1 of
the ACK as the `hl7` package parses it, or REFUSED: <reason> when the TLS connection
or the exchange fails.

usage: mllp_tls.py PORT CA_PEM MESSAGE_FILE [CLIENT_CERT CLIENT_KEY]
"""
import socket
import ssl
import sys

import hl7


def main():
    port, ca, message_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if len(sys.argv) > 5:
        ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    message = open(message_file, "rb").read()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"\x0b" + message + b"\x1c\x0d")
                buf = b""
                while not buf.endswith(b"\x1c\x0d"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
    except (OSError, ssl.SSLError) as e:
        print(f"REFUSED: {e}")
        return
    if not buf:
        print("REFUSED: connection closed without an ACK")
        return
    ack = hl7.parse(buf.strip(b"\x0b\x1c\x0d").decode("utf-8"))
    print(str(ack.segment("MSA")[1]))


if __name__ == "__main__":
    main()
