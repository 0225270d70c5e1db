"""GET the proxy every 20 ms until the file STOP exists (bounded: 20,000); count answers."""
import http.client, sys, time, os, json
port, stop = int(sys.argv[1]), sys.argv[2]
counts = {}
for _ in range(20000):
    if os.path.exists(stop):
        break
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse(); body = r.read().decode(errors="replace"); c.close()
        k = "200" if r.status == 200 else ("503 maintenance page" if r.status == 503 and "right back" in body else f"other {r.status}")
    except OSError as e:
        k = "connection error"
    counts[k] = counts.get(k, 0) + 1
    time.sleep(0.02)
print(json.dumps(counts))
