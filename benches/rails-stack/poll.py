"""GET the proxy every 20 ms until the file STOP exists (bounded: 20,000); count
answers, time each request (the slowest and the 99th percentile: a release is
judged by its slowest request), and time the maintenance pages: the window a
user saw, from the first to the last of them (plus one poll)."""
import http.client, sys, time, os, json
port, stop = int(sys.argv[1]), sys.argv[2]
counts = {}
odd = []
slow = []
took = []
first = last = None
began = time.monotonic()
for _ in range(20000):
    if os.path.exists(stop):
        break
    at = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse(); body = r.read().decode(errors="replace"); c.close()
        k = "200" if r.status == 200 else ("503 maintenance page" if r.status == 503 and "right back" in body else f"other {r.status}")
        if k.startswith("other"):
            odd.append(f"{(at - began) * 1000:.0f} ms: {r.status} {body[:80]!r}")
    except OSError as e:
        k = "connection error"
        odd.append(f"{(at - began) * 1000:.0f} ms: {e!r}")
    ms = (time.monotonic() - at) * 1000
    took.append(ms)
    if ms > 250:
        slow.append(f"{(at - began) * 1000:.0f} ms: {k} after {ms:.0f} ms")
    if k == "503 maintenance page":
        first = at if first is None else first
        last = time.monotonic()
    counts[k] = counts.get(k, 0) + 1
    time.sleep(0.02)
window = 0 if first is None else round((last - first) * 1000) + 20
took.sort()
p99 = took[min(len(took) - 1, int(len(took) * 0.99))] if took else 0
print(json.dumps({"answers": counts, "window_ms": window, "odd": odd[:20],
                  "slowest_ms": round(took[-1]) if took else 0, "p99_ms": round(p99),
                  "slow": slow[:20],
                  "began": time.time() - (time.monotonic() - began)}))
