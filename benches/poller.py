"""A client that GETs a proxy every 20 ms, as a user would, each request timed:
shared by the benchmarks (a release is judged by its slowest request)."""

import http.client
import threading
import time


def poll(port, path, stop, seen, limit=3000):
    """GETs 127.0.0.1:PORT/PATH every 20 ms until `stop` is set (at most
    `limit` requests): (time sent, what, body, seconds taken) for each."""
    for _ in range(limit):
        if stop.is_set():
            return
        at = time.time()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            conn.close()
            if resp.status == 200:
                what, body = "200", body.strip()
            elif resp.status == 503 and "right back" in body:
                what, body = "503 maintenance page", ""
            else:
                what, body = f"other ({resp.status})", body[:80]
        except OSError as e:
            what, body = "connection error", str(e)
        seen.append((at, what, body, time.time() - at))
        time.sleep(0.02)


class Client:
    """`with Client(port, path) as seen:` polls while the block runs, and
    1 s after it."""

    def __init__(self, port, path):
        self.port, self.path = port, path
        self.seen = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=poll, args=(port, path, self.stop, self.seen))

    def __enter__(self):
        self.thread.start()
        time.sleep(0.2)
        return self.seen

    def __exit__(self, *exc):
        time.sleep(1.0)
        self.stop.set()
        self.thread.join()
        return False


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else 0


def figures(seen):
    """Answers by kind, answers other than 200, slowest and p99 (ms)."""
    counts = {}
    for _, what, _, _ in seen:
        counts[what] = counts.get(what, 0) + 1
    latencies = [t * 1000 for *_, t in seen]
    return {
        "counts": counts,
        "not_200": sum(n for k, n in counts.items() if k != "200"),
        "slowest": max(latencies, default=0),
        "p99": percentile(latencies, 0.99),
    }
