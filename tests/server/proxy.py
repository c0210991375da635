"""PROXY protocol clients for server/proxy.sh: what HAProxy cannot be made
to send (a forged, malformed, slow or missing header), written as raw bytes,
then a real TLS session on the same socket.

  proxy.py send SRC HOST PORT CA CERT KEY HEADER PATH
      connects from address SRC, sends HEADER and the TLS ClientHello in
      one write (so a server that reads past the header would eat the
      handshake), finishes the handshake and GETs PATH. HEADER is one of
      v4:ADDR (PROXY, TCP over IPv4, client ADDR port 40000), v6:ADDR,
      local (LOCAL), v4tlv:ADDR (with 300 bytes of TLVs), v1:ADDR (the
      text header), version3, unix, none. Prints the status, or
      "refused: ERROR" when the server ended the connection.
  proxy.py trickle SRC HOST PORT SECONDS
      sends a valid v2 header one byte every 0.4 s; prints "closed after N
      s" or "open after N s" (N whole seconds since the connection).
  proxy.py silent SRC HOST PORT SECONDS
      connects and sends nothing; prints the same.
  proxy.py partial SRC HOST PORT
      sends the first 20 bytes of a 28-byte header, then closes.
  proxy.py hold SRC HOST PORT CA CERT KEY N SECONDS
      opens N TLS connections from SRC, one GET /healthz on each, prints
      their statuses on one line, keeps them open SECONDS, then closes.
"""
import socket
import ssl
import struct
import sys
import time

from client import send_slowly  # tests/server/client.py, beside this file

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def header(kind):
    name, _, addr = kind.partition(":")
    if name in ("v4", "v4tlv"):
        body = socket.inet_aton(addr) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, 443)
        if name == "v4tlv":
            # PP2_TYPE_ALPN "h2", then a PP2_TYPE_NOOP of 292 bytes
            body += b"\x01\x00\x02h2" + b"\x04" + struct.pack("!H", 292) + b"\xee" * 292
        return SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body
    if name == "v6":
        body = socket.inet_pton(socket.AF_INET6, addr) + socket.inet_pton(
            socket.AF_INET6, "::1") + struct.pack("!HH", 40000, 443)
        return SIG + b"\x21\x21" + struct.pack("!H", len(body)) + body
    if name == "local":
        return SIG + b"\x20\x00\x00\x00"
    if name == "v1":
        return ("PROXY TCP4 %s 127.0.0.1 40000 443\r\n" % addr).encode()
    if name == "version3":
        return SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12
    if name == "unix":
        return SIG + b"\x21\x31" + struct.pack("!H", 216) + b"\x00" * 216
    if name == "none":
        return b""
    raise SystemExit("unknown header kind " + kind)


def connect(src, host, port, timeout):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.settimeout(timeout)
    sock.bind((src, 0))
    sock.connect((host, int(port)))
    return sock


def send(src, host, port, ca, cert, key, kind, path):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    sock = connect(src, host, port, 10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    first = True
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            data = outgoing.read()
            if first:
                data = header(kind) + data
                first = False
            if data:
                sock.sendall(data)
            got = sock.recv(65536)
            if not got:
                raise ConnectionError("the server closed the connection")
            incoming.write(got)
        tls.write(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        sock.sendall(outgoing.read())
        answer = b""
        while b"\r\n" not in answer:
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                got = sock.recv(65536)
                if not got:
                    raise ConnectionError("the server closed the connection")
                incoming.write(got)
        print(answer.split(b" ")[1].decode())
    except (OSError, ssl.SSLError) as e:
        print("refused: %s" % e)


def wait_close(sock, start, seconds):
    sock.settimeout(max(0.1, seconds - (time.time() - start)))
    try:
        gone = sock.recv(1) == b""
    except socket.timeout:
        gone = False
    except ConnectionError:
        gone = True
    return gone


def trickle(src, host, port, seconds):
    seconds = float(seconds)
    sock = connect(src, host, port, seconds + 5)
    send_slowly(sock, header("v4:192.0.2.9"), seconds, 0.4)


def silent(src, host, port, seconds):
    seconds = float(seconds)
    sock = connect(src, host, port, seconds + 5)
    start = time.time()
    gone = wait_close(sock, start, seconds)
    print("%s after %d s" % ("closed" if gone else "open", time.time() - start))


def partial(src, host, port):
    sock = connect(src, host, port, 5)
    sock.sendall(header("v4:192.0.2.9")[:20])
    time.sleep(0.2)
    sock.close()


def hold(src, host, port, ca, cert, key, n, seconds):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    conns, statuses = [], []
    for _ in range(int(n)):
        try:
            s = ctx.wrap_socket(connect(src, host, port, 10), server_hostname="localhost")
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            statuses.append(s.recv(65536).split(b" ")[1].decode())
            conns.append(s)
        except (OSError, ssl.SSLError, IndexError):
            statuses.append("refused")
    print(" ".join(statuses), flush=True)
    time.sleep(float(seconds))
    for s in conns:
        s.close()


if __name__ == "__main__":
    modes = {"send": send, "trickle": trickle, "silent": silent, "partial": partial, "hold": hold}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        raise SystemExit(__doc__)
    modes[sys.argv[1]](*sys.argv[2:])
