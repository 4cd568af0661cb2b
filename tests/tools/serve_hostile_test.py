#!/usr/bin/env python3
"""`bg_jobs serve` against hostile and careless clients, over real sockets.

usage: serve_hostile_test.py BG_JOBS SEED_STORE WORK_DIR

Each check names the finding it guards. Every wait is bounded; the script
exits 1 when a check fails.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

bg_jobs, seed, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(work, exist_ok=True)
db = os.path.join(work, "jobs.db")
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(db + suffix):
        os.remove(db + suffix)
failures = 0


def check(what, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else ": " + str(detail)))
    if not ok:
        failures += 1


ids = json.loads(subprocess.run([seed, "--store", db, "--hostile", "1"],
                                check=True, capture_output=True,
                                text=True).stdout)


def start(*extra):
    p = subprocess.Popen([bg_jobs, "--db", db, "serve", "--listen",
                          "127.0.0.1:0", *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    m = re.search(r":(\d+)/", line)
    if not m:
        p.kill()
        raise SystemExit("serve printed no port: " + line)
    return p, int(m.group(1))


def request(port, raw, timeout=10):
    """Sends raw bytes; returns (status, headers+body text) or (None, why)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"content-length: *(\d+)", head, re.I)
            if sep and m and len(body) >= int(m.group(1)):
                break
    except OSError as e:
        return None, str(e)
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d+)", data)
    return (int(m.group(1)) if m else None), data.decode("utf-8", "replace")


def get(port, path, headers="", timeout=10):
    return request(port, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
                          "Connection: close\r\n\r\n" % (path, port, headers)
                          ).encode(), timeout)


def exits_within(p, seconds):
    try:
        p.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False


server, port = start()
try:
    # 1. Slow clients: each sends a header line every 2 s and never ends.
    stop_trickle = threading.Event()
    slow = []
    for _ in range(16):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow.append(s)
    closed_by_server = []

    def trickle(s):
        start_at = time.monotonic()
        while not stop_trickle.is_set() and time.monotonic() - start_at < 25:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                s.settimeout(2)
                if s.recv(1024) == b"":
                    closed_by_server.append(time.monotonic() - start_at)
                    return
            except socket.timeout:
                continue
            except OSError:
                closed_by_server.append(time.monotonic() - start_at)
                return

    threads = [threading.Thread(target=trickle, args=(s,)) for s in slow]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    status, _ = get(port, "/api/stats", timeout=5)
    check("slow clients: /api/stats is answered at once", status == 200 and
          time.monotonic() - t0 < 3, "status %s after %.1fs" % (status, time.monotonic() - t0))
    status, _ = get(port, "/metrics", timeout=5)
    check("slow clients: /metrics is answered", status == 200, status)
    for t in threads:
        t.join(30)
    check("slow clients: each is cut off at the 10 s request deadline",
          len(closed_by_server) == 16 and max(closed_by_server) < 16,
          closed_by_server)
    for s in slow:
        s.close()

    # 7. Bounded headers and bodies.
    big_headers = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + \
        b"X-Big: " + b"a" * (10 * 1024 * 1024) + b"\r\n\r\n"
    status, _ = request(port, big_headers)
    check("10 MB of headers: 431 (or the connection is cut)",
          status in (431, None), status)
    many = b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n" + \
        b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"
    status, _ = request(port, many)
    check("200 header fields: 431", status == 431, status)
    body = b"x" * (10 * 1024 * 1024)
    status, _ = request(port, b"POST /api/jobs/1/delete HTTP/1.1\r\n"
                        b"Host: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
                        % len(body) + body)
    check("a 10 MB body: 413 (or the connection is cut)",
          status in (413, None), status)
    status, _ = request(port, b"POST /api/jobs/1/delete HTTP/1.1\r\n"
                        b"Host: 127.0.0.1\r\nContent-Length: abc\r\n\r\n")
    check("Content-Length: abc is a bad request", status == 400, status)

    # 3. DNS rebinding: other Host names and Origins are refused.
    status, text = request(port, b"GET / HTTP/1.1\r\nHost: attacker.example:%d"
                           b"\r\nConnection: close\r\n\r\n" % port)
    check("Host: attacker.example is refused (421)", status == 421, status)
    check("and the page with its CSRF token is not served",
          "csrf" not in text.lower() or status == 421, text[:200])
    status, text = get(port, "/")
    token = re.search(r'name="csrf" content="([0-9a-f]+)"', text)
    token = token.group(1) if token else ""
    check("the page carries a CSRF token", bool(token), text[:300])
    victim = ids["waiting"][0]
    status, _ = request(port, ("POST /api/jobs/%d/delete HTTP/1.1\r\n"
                               "Host: 127.0.0.1:%d\r\nOrigin: http://attacker.example:%d\r\n"
                               "X-CSRF-Token: %s\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n" % (victim, port, port, token)).encode())
    check("a POST from another Origin is refused", status == 403, status)
    status, _ = get(port, "/api/jobs/%d" % victim)
    check("and deleted nothing", status == 200, status)
    status, _ = request(port, ("POST /api/queues/nope/pause HTTP/1.1\r\n"
                               "Host: localhost:%d\r\nOrigin: http://localhost:%d\r\n"
                               "X-CSRF-Token: %s\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n" % (port, port, token)).encode())
    check("the dashboard refuses to pause an unknown queue", status == 404, status)

    # 5. Stored text that is not UTF-8 does not break the API.
    status, text = get(port, "/api/jobs?state=failed")
    check("/api/jobs?state=failed answers 200 despite raw bytes", status == 200, text[:300])
    body = text.partition("\r\n\r\n")[2]
    try:
        listing = json.loads(body)
        hostile = [j for j in listing["jobs"] if j["id"] == ids["hostile"]]
        check("the raw bytes show as U+FFFD", hostile and "\ufffd" in hostile[0]["error"], hostile)
    except ValueError as e:
        check("the listing is JSON", False, e)

    # Strict numbers in the API.
    for bad in ("010", "0x9", "99999999999999999999", "-1"):
        status, _ = get(port, "/api/jobs/" + bad)
        check("job id %r is a bad request" % bad, status == 400, status)
    status, _ = get(port, "/api/jobs?limit=0x10")
    check("limit=0x10 is a bad request", status == 400, status)

    # 12. A gauge whose jobs are gone goes away.
    status, text = get(port, "/metrics")
    check("/metrics shows the hostile job's name", 'job="hostile"' in text, text[-500:])
    subprocess.run([bg_jobs, "--db", db, "jobs", "delete", str(ids["hostile"])],
                   check=True, capture_output=True)
    time.sleep(1.1)  # the store's gauges are read at most once a second
    status, text = get(port, "/metrics")
    check("after its last job is deleted, its series is gone",
          status == 200 and 'job="hostile"' not in text, text[-500:])

    # Low: 200 simultaneous connections are all answered promptly.
    results = []

    def one():
        results.append(get(port, "/api/stats", timeout=10)[0])

    crowd = [threading.Thread(target=one) for _ in range(200)]
    t0 = time.monotonic()
    for t in crowd:
        t.start()
    for t in crowd:
        t.join(20)
    check("200 simultaneous connections: each answered (200 or 503) within 15 s",
          len(results) == 200 and all(r in (200, 503) for r in results) and
          time.monotonic() - t0 < 15,
          "%d answers, %s" % (len(results), sorted(set(map(str, results)))))

    # 9. A second serve on the same port fails.
    second = subprocess.run([bg_jobs, "--db", db, "serve", "--listen",
                             "127.0.0.1:%d" % port], capture_output=True,
                            text=True, timeout=20)
    check("a second serve on a port in use exits 1", second.returncode == 1,
          second.returncode)

    # 1. SIGTERM ends serve while a slow client is connected.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.2)
    server.send_signal(signal.SIGTERM)
    check("SIGTERM ends serve within 5 s with a slow client connected",
          exits_within(server, 5) and server.returncode == 0, server.returncode)
    s.close()
finally:
    if server.poll() is None:
        server.kill()

# The token: ?token= opens the page once (a redirect with the cookie).
server, port = start("--token", "s3cret-token")
try:
    status, text = get(port, "/?token=s3cret-token")
    check("?token= redirects to / and sets the cookie",
          status == 303 and "bg_jobs_token=s3cret-token" in text, text[:300])
    status, _ = get(port, "/api/stats?token=s3cret-token")
    check("?token= on the API is not a credential", status == 401, status)
    status, _ = get(port, "/api/stats", "Cookie: bg_jobs_token=s3cret-token\r\n")
    check("the cookie is", status == 200, status)
finally:
    server.send_signal(signal.SIGTERM)
    exits_within(server, 5)

# 6. SIGTERM right after start ends serve every time.
quick = 0
for _ in range(20):
    p = subprocess.Popen([bg_jobs, "--db", db, "serve", "--listen", "127.0.0.1:0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    if exits_within(p, 5):
        quick += 1
check("SIGTERM soon after start: 20 of 20 exit within 5 s", quick == 20, quick)

print("%d check(s) failed" % failures if failures else "all checks passed")
sys.exit(1 if failures else 0)
