"""A TLS client for the scenarios curl cannot script: one keep-alive
connection across a change made by the CLI, and a request whose body is
still arriving when the server is told to stop.

  client.py keepalive HOST PORT CA CERT KEY PATH -- CMD...
      GET PATH, run CMD, wait 1.2 s, GET PATH again on the same connection;
      prints "STATUS1 STATUS2 REASON2 same-connection|new-connection".
  client.py keepalive-until HOST PORT CA CERT KEY PATH -- CMD...
      GET PATH, run CMD, then GET PATH on the same connection every 50 ms
      until the answer changes (at most 5 s); prints "STATUS1 STATUS2
      REASON2 same-connection|new-connection MS", MS from CMD's end.
  client.py keepalive-many HOST PORT CA CERT KEY PATH SRC,SRC... -- CMD...
      the same on one connection from each source address SRC, opened one
      after the other (each after the previous one's first answer, so that
      a round-robin balancer puts them on different nodes); all are polled
      until each answer changes. Prints one line per connection:
      "SRC STATUS1 STATUS2 REASON2 same-connection|new-connection MS DETAIL2"
      (DETAIL2 the error detail of the JSON body, or "-").
  client.py slow HOST PORT CA CERT KEY PATH MARKER
      sends the headers and half the body, creates MARKER, waits until
      MARKER is removed (at most 20 s), sends the rest; prints the status.
  client.py raw HOST PORT CA CERT KEY FILE...
      on one connection, sends each FILE as it is and reads one answer
      after each; prints one line per answer, "STATUS BODY" (BODY the
      first 300 bytes, or "-"), then "open" or "closed" for the connection.
      CERT and KEY may be "-" (no client certificate).
  client.py trickle HOST PORT CA CERT KEY MODE SECONDS
      holds a connection and reports how the server ends it, within
      SECONDS: MODE "head" sends a request head one byte a second; "silent"
      opens TCP and sends nothing; "idle-then-head" does one request, waits
      quietly for 3 s, checks the connection still serves a request, then
      trickles the next head; "idle" does one request and then waits for
      the server to close the connection. Prints "closed after N s" (N
      whole seconds since the trickle or the wait began) or "open after N s".
  client.py stall HOST PORT CA CERT KEY SECONDS
      starts a TLS handshake, reads the server's whole flight and then
      never sends its own second one (certificate, Finished); says
      "stalled" on stderr then, and prints how the server ends it within
      SECONDS, as trickle does.
  client.py flood HOST PORT CA CERT KEY PATH HEADER_BYTES BODY_BYTES
      POSTs to PATH with an X-Pad header of HEADER_BYTES and a body of
      BODY_BYTES, written to the end whatever the server answers meanwhile
      (as newman and Postman do), then reads the answer; prints "sent all"
      or "send failed: ERROR", then "STATUS BODY" or "no answer: ERROR".
"""
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time


def context(ca, cert, key):
    ctx = ssl.create_default_context(cafile=ca)
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    return ctx


def read_answer(s):
    """One HTTP answer: (status, body); status "none" when the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = s.recv(65536)
        except (ConnectionError, ssl.SSLError, socket.timeout):
            chunk = b""
        if not chunk:
            return ("none", b"")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head.split(b" ")[1].decode(), body)


def raw(host, port, ca, cert, key, *files):
    sock = socket.create_connection((host, int(port)), timeout=10)
    s = context(ca, cert, key).wrap_socket(sock, server_hostname="localhost")
    for name in files:
        with open(name, "rb") as f:
            s.sendall(f.read())
        status, body = read_answer(s)
        print(status, body[:300].decode(errors="replace") if body else "-")
    s.settimeout(0.5)
    try:
        print("closed" if s.recv(1) == b"" else "open")
    except socket.timeout:
        print("open")
    except (ConnectionError, ssl.SSLError):
        print("closed")


def send_slowly(sock, data, seconds, wait):
    """Sends DATA a byte at a time, waiting up to WAIT seconds for an answer
    after each, for at most SECONDS; prints whether the server closed the
    connection meanwhile ("closed after N s") or not ("open after N s")."""
    start = time.time()
    sock.settimeout(wait)
    for byte in data:
        if time.time() - start > seconds:
            break
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1) == b"":
                print("closed after %d s" % (time.time() - start))
                return
        except socket.timeout:
            pass
        except (ConnectionError, ssl.SSLError):
            print("closed after %d s" % (time.time() - start))
            return
    print("open after %d s" % (time.time() - start))


def first_request(host, port, ca, cert, key, path):
    """A keep-alive connection and its first answer (read): (conn, answer, socket)."""
    conn = http.client.HTTPSConnection(host, int(port), context=context(ca, cert, key),
                                       timeout=20)
    conn.request("GET", path)
    r1 = conn.getresponse()
    r1.read()
    return conn, r1, conn.sock


def keepalive(host, port, ca, cert, key, path, cmd):
    conn, r1, sock1 = first_request(host, port, ca, cert, key, path)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    time.sleep(1.2)
    conn.request("GET", path)
    same = "same-connection" if conn.sock is sock1 else "new-connection"
    r2 = conn.getresponse()
    r2.read()
    print(r1.status, r2.status, r2.getheader("X-Certgate-Reason") or "-", same)


def keepalive_until(host, port, ca, cert, key, path, cmd):
    """Like keepalive, but after CMD polls the same connection every 50 ms
    until the answer changes (at most 5 s); prints both statuses, the
    reason, whether the connection was the same, and the milliseconds from
    CMD's end to the changed answer."""
    conn, r1, sock1 = first_request(host, port, ca, cert, key, path)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    while True:
        conn.request("GET", path)
        r2 = conn.getresponse()
        r2.read()
        if r2.status != r1.status or time.monotonic() - t0 > 5:
            break
        time.sleep(0.05)
    ms = int((time.monotonic() - t0) * 1000)
    same = "same-connection" if conn.sock is sock1 else "new-connection"
    print(r1.status, r2.status, r2.getheader("X-Certgate-Reason") or "-", same, ms)


def keepalive_many(host, port, ca, cert, key, path, sources, cmd):
    ctx = context(ca, cert, key)
    conns = []
    for src in sources.split(","):
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=20,
                                           source_address=(src, 0))
        conn.request("GET", path)
        r1 = conn.getresponse()
        r1.read()
        conns.append({"src": src, "conn": conn, "sock": conn.sock, "status1": r1.status})
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    pending = list(conns)
    while pending:
        for c in list(pending):
            c["conn"].request("GET", path)
            r2 = c["conn"].getresponse()
            body = r2.read()
            c["ms"] = int((time.monotonic() - t0) * 1000)
            c["r2"], c["body"] = r2, body
            if r2.status != c["status1"]:
                pending.remove(c)
        if time.monotonic() - t0 > 5:
            break
        time.sleep(0.05)
    for c in conns:
        try:
            detail = json.loads(c["body"])["error"]["detail"].replace(" ", "_")
        except (ValueError, KeyError, TypeError):
            detail = "-"
        same = "same-connection" if c["conn"].sock is c["sock"] else "new-connection"
        print(c["src"], c["status1"], c["r2"].status, c["r2"].getheader("X-Certgate-Reason") or "-",
              same, c["ms"], detail)


def slow(host, port, ca, cert, key, path, marker):
    raw = socket.create_connection((host, int(port)), timeout=30)
    s = context(ca, cert, key).wrap_socket(raw, server_hostname="localhost")
    body = b'{"x":"0123456789"}'
    head = ("GET %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (path, len(body))).encode()
    s.sendall(head + body[:5])
    open(marker, "w").close()
    for _ in range(200):
        if not os.path.exists(marker):
            break
        time.sleep(0.1)
    time.sleep(0.3)
    s.sendall(body[5:])
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print(data.split(b"\r\n")[0].decode() if data else "no answer")


def trickle(host, port, ca, cert, key, mode, seconds):
    seconds = float(seconds)
    sock = socket.create_connection((host, int(port)), timeout=seconds + 5)
    if mode == "silent":
        wait_for_close(sock, seconds)
        return
    s = context(ca, cert, key).wrap_socket(sock, server_hostname="localhost")
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    if mode == "idle":
        s.sendall(ok)
        read_answer(s)
        wait_for_close(s, seconds)
        return
    if mode == "idle-then-head":
        s.sendall(ok)
        first, _ = read_answer(s)
        time.sleep(3)
        s.sendall(ok)
        second, _ = read_answer(s)
        if first != "200" or second != "200":
            print("keep-alive broken: %s %s" % (first, second))
            return
    send_slowly(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000, seconds, 1.0)


def wait_for_close(sock, seconds):
    """Prints "closed after N s" or "open after N s" (N whole seconds)."""
    start = time.time()
    sock.settimeout(seconds)
    try:
        gone = sock.recv(1) == b""
    except socket.timeout:
        gone = False
    except (ConnectionError, ssl.SSLError):
        gone = True
    print("%s after %d s" % ("closed" if gone else "open", time.time() - start))


def stall(host, port, ca, cert, key, seconds):
    seconds = float(seconds)
    sock = socket.create_connection((host, int(port)), timeout=seconds + 5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context(ca, cert, key).wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            tls.do_handshake()
            break  # our second flight is ready: the server's was complete
        except ssl.SSLWantReadError:
            pass
        if outgoing.pending and not incoming.pending:
            sock.sendall(outgoing.read())  # the ClientHello
        data = sock.recv(65536)
        if not data:
            print("closed during the server's flight")
            return
        incoming.write(data)
    print("stalled", file=sys.stderr, flush=True)
    wait_for_close(sock, seconds)


def flood(host, port, ca, cert, key, path, header_bytes, body_bytes):
    header_bytes, body_bytes = int(header_bytes), int(body_bytes)
    s = context(ca, cert, key).wrap_socket(socket.create_connection((host, port)),
                                           server_hostname="localhost")
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "X-Pad: %s\r\nContent-Length: %d\r\n\r\n" % (path, "p" * header_bytes, body_bytes))
    chunk = b"x" * 65536
    try:
        s.sendall(head.encode())
        left = body_bytes
        while left > 0:
            s.sendall(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))
        print("sent all")
    except (OSError, ssl.SSLError) as e:
        print("send failed: %r" % e)
    try:
        status, body = read_answer(s)
        print("%s %s" % (status, body[:300].decode(errors="replace")))
    except (OSError, ssl.SSLError, ValueError) as e:
        print("no answer: %r" % e)


if __name__ == "__main__":
    if sys.argv[1] == "keepalive":
        sep = sys.argv.index("--")
        keepalive(*sys.argv[2:sep], sys.argv[sep + 1:])
    elif sys.argv[1] == "keepalive-until":
        sep = sys.argv.index("--")
        keepalive_until(*sys.argv[2:sep], sys.argv[sep + 1:])
    elif sys.argv[1] == "keepalive-many":
        sep = sys.argv.index("--")
        keepalive_many(*sys.argv[2:sep], sys.argv[sep + 1:])
    elif sys.argv[1] == "raw":
        raw(*sys.argv[2:])
    elif sys.argv[1] == "trickle":
        trickle(*sys.argv[2:9])
    elif sys.argv[1] == "stall":
        stall(*sys.argv[2:8])
    elif sys.argv[1] == "flood":
        flood(*sys.argv[2:10])
    else:
        slow(*sys.argv[2:9])
