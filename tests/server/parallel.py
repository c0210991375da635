"""Concurrent keep-alive clients with the test PKI, for the scenarios about
many requests at once. Used from the shell tests with
PYTHONPATH="$TESTS_SRCDIR/server" python3 - ARGS <<'PY' ... PY.
"""
import http.client
import json
import ssl
import threading


def connect(url, pki, name="client"):
    """A keep-alive HTTPS connection to URL presenting PKI/NAME.pem."""
    host, port = url.split("//")[1].split(":")
    ctx = ssl.create_default_context(cafile=pki + "/root.pem")
    ctx.load_cert_chain("%s/%s.pem" % (pki, name), "%s/%s.key" % (pki, name))
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)


def call(conn, method, path, body, headers=None):
    """Sends BODY as JSON; returns (status, decoded JSON body or text)."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn.request(method, path, json.dumps(body), h)
    r = conn.getresponse()
    data = r.read()
    try:
        data = json.loads(data)
    except ValueError:
        data = data.decode("utf-8", "replace")
    return r.status, data


def run(n, worker):
    """Runs worker(i) for i in 0..n-1 in n threads; returns all the lists
    they return, concatenated."""
    results, lock = [], threading.Lock()

    def one(i):
        out = worker(i)
        with lock:
            results.extend(out)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
