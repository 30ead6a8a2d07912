"""A monitoring probe with Python's ssl, for the early-tickets test (early-tickets.test.ts).

Connects with TLS 1.3, reads the first protocol line, closes; then connects
again offering the session it got, `connections` times in all. Prints one
JSON list, one entry per connection: the line read, whether the session was
resumed and whether the client held a ticket when it closed.

Python reads records only as far as the data it asks for, so a ticket the
server sends after that line is never seen: the client resumes next time
only when the server's NewSessionTicket messages come before the line.

Request (JSON on stdin): {"protocol": "imap"|"pop3"|"smtp", "port": N,
  "mode": "ssl"|"starttls", "cafile": PATH, "connections": N}
- ssl: implicit TLS; the line read is the greeting.
- starttls: the plaintext greeting, the protocol's STARTTLS command and its
  reply, then the handshake over memory BIOs so that the client's Finished
  and its first command (NOOP) leave in one write, as a client that talks at
  once after the handshake sends them; the line read is NOOP's reply.
"""
import json
import socket
import ssl
import sys

STARTTLS = {'imap': b'a STARTTLS\r\n', 'pop3': b'STLS\r\n', 'smtp': b'STARTTLS\r\n'}
NOOP = {'imap': b'b NOOP\r\n', 'pop3': b'NOOP\r\n', 'smtp': b'NOOP\r\n'}


def context(req):
    ctx = ssl.create_default_context(cafile=req['cafile'])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    return ctx


def implicit(req, ctx, session):
    raw = socket.create_connection(('127.0.0.1', req['port']), timeout=10)
    with ctx.wrap_socket(raw, server_hostname='localhost', session=session) as tls:
        line = tls.makefile('rb').readline()
        return line, tls.session_reused, tls.session


def read_line(sock):
    line = b''
    while not line.endswith(b'\n'):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


def starttls(req, ctx, session):
    proto = req['protocol']
    with socket.create_connection(('127.0.0.1', req['port']), timeout=10) as raw:
        read_line(raw)
        if proto == 'smtp':
            raw.sendall(b'EHLO probe.example\r\n')
            while read_line(raw)[3:4] == b'-':
                pass
        raw.sendall(STARTTLS[proto])
        read_line(raw)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname='localhost', session=session)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        tls.write(NOOP[proto])
        raw.sendall(outgoing.read())
        line = b''
        while not line.endswith(b'\n'):
            try:
                line += tls.read(1)
            except ssl.SSLWantReadError:
                data = raw.recv(65536)
                if not data:
                    break
                incoming.write(data)
        return line, tls.session_reused, tls.session


def main():
    req = json.load(sys.stdin)
    ctx = context(req)
    connect = implicit if req['mode'] == 'ssl' else starttls
    session = None
    out = []
    for _ in range(req.get('connections', 2)):
        line, reused, session = connect(req, ctx, session)
        out.append({'line': line.decode('latin1').rstrip('\r\n'), 'reused': reused,
                    'ticket': session is not None and session.has_ticket})
    json.dump(out, sys.stdout)


main()
