"""Real mail clients (Python's imaplib, poplib, smtplib with ssl) for the TLS end-to-end tests.

Reads one JSON request on stdin, prints one JSON answer: every server reply the
library exposes, in order, with exceptions recorded as {"error": "..."} so the
test can compare what a user of the library would see.
Request: {"protocol": "imap"|"pop3"|"smtp", "port": N, "mode": "ssl"|"starttls"|"plain",
          "cafile": PATH, "user": U, "password": P, "login_before_tls": bool,
          "certfile": PATH, "keyfile": PATH}
"""
import imaplib
import json
import poplib
import smtplib
import ssl
import sys


def text(value):
    if isinstance(value, bytes):
        return value.decode('latin1')
    if isinstance(value, (list, tuple)):
        return [text(v) for v in value]
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    return value


def context(req):
    ctx = ssl.create_default_context(cafile=req['cafile'])
    if req.get('certfile'):
        ctx.load_cert_chain(req['certfile'], req.get('keyfile'))
    return ctx


def attempt(log, name, fn):
    try:
        log.append([name, text(fn())])
        return True
    except Exception as e:  # the library's error, as a user sees it
        log.append([name, {'error': '%s: %s' % (type(e).__name__, text(str(e)))}])
        return False


def tls_info(log, sock):
    log.append(['tls', [sock.version(), sock.cipher()[0]]])


def imap(req, log):
    host, port = '127.0.0.1', req['port']
    if req['mode'] == 'ssl':
        m = imaplib.IMAP4_SSL(host, port, ssl_context=context(req), timeout=10)
        tls_info(log, m.sock)
    else:
        m = imaplib.IMAP4(host, port, timeout=10)
    log.append(['welcome', text(m.welcome)])
    attempt(log, 'capability', m.capability)
    if req.get('login_before_tls'):
        attempt(log, 'login', lambda: m.login(req['user'], req['password']))
    if req['mode'] == 'starttls':
        if not attempt(log, 'starttls', lambda: m.starttls(context(req))):
            return
        tls_info(log, m.sock)
        attempt(log, 'capability', m.capability)
    if attempt(log, 'login', lambda: m.login(req['user'], req['password'])):
        attempt(log, 'noop', m.noop)
    attempt(log, 'logout', m.logout)


def pop3(req, log):
    host, port = '127.0.0.1', req['port']
    if req['mode'] == 'ssl':
        p = poplib.POP3_SSL(host, port, context=context(req), timeout=10)
        tls_info(log, p.sock)
    else:
        p = poplib.POP3(host, port, timeout=10)
    log.append(['welcome', text(p.getwelcome())])
    attempt(log, 'capa', lambda: p._longcmd('CAPA'))
    if req.get('login_before_tls'):
        attempt(log, 'user', lambda: p.user(req['user']))
    if req['mode'] == 'starttls':
        if not attempt(log, 'stls', lambda: p.stls(context(req))):
            return
        tls_info(log, p.sock)
        attempt(log, 'capa', lambda: p._longcmd('CAPA'))
    if attempt(log, 'user', lambda: p.user(req['user'])):
        if attempt(log, 'pass', lambda: p.pass_(req['password'])):
            attempt(log, 'stat', p.stat)
    attempt(log, 'quit', p.quit)


def smtp(req, log):
    host, port = '127.0.0.1', req['port']
    if req['mode'] == 'ssl':
        s = smtplib.SMTP_SSL(host, port, context=context(req), timeout=10)
        tls_info(log, s.sock)
    else:
        s = smtplib.SMTP(host, port, timeout=10)
    attempt(log, 'ehlo', lambda: s.ehlo('client.example'))
    if req.get('login_before_tls'):
        attempt(log, 'mail', lambda: s.mail('a@example.com'))
        attempt(log, 'auth', lambda: s.docmd('AUTH', 'PLAIN AHVzZXIAcGFzcw=='))
    if req['mode'] == 'starttls':
        if not attempt(log, 'starttls', lambda: s.starttls(context=context(req))):
            return
        tls_info(log, s.sock)
        attempt(log, 'ehlo', lambda: s.ehlo('client.example'))
    if attempt(log, 'login', lambda: s.login(req['user'], req['password'])):
        attempt(log, 'noop', s.noop)
    attempt(log, 'quit', s.quit)


def main():
    req = json.load(sys.stdin)
    log = []
    try:
        {'imap': imap, 'pop3': pop3, 'smtp': smtp}[req['protocol']](req, log)
    except Exception as e:
        log.append(['exception', '%s: %s' % (type(e).__name__, text(str(e)))])
    json.dump(log, sys.stdout)


main()
