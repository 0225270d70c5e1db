#!/bin/sh
# A host's front (/front/cgi-bin/index.cgi in the app's image, so busybox
# httpd runs it for `/`): relays GET / to what answers to the name `app` on
# its network, as the demo's proxy does (plans/demo/proxy/cgi-bin/up). Two
# containers answer to it for a moment while a release takes over: an address
# that does not connect within 0.2 s is passed over for the next, as nginx's
# `proxy_next_upstream` with `proxy_connect_timeout 200ms` (a release that
# stopped may still be in docker's answer a moment after its address is gone).
# (busybox is static: its wget cannot use docker's DNS, nslookup can.)

# Whether IP:PORT takes a connection within 0.2 s: 0 yes, 1 refused, else
# not in time. (busybox's `timeout` counts whole seconds: a timer of our own.)
connects() {
  nc "$1" "$2" </dev/null >/dev/null 2>&1 &
  conn=$!
  (sleep 0.2; kill "$conn") >/dev/null 2>&1 &
  timer=$!
  wait "$conn"
  code=$?
  kill "$timer" 2>/dev/null
  return "$code"
} 2>/dev/null

relay() {
  if body=$(timeout 2 wget -q -O - "http://$1:8080/" 2>/dev/null); then
    printf 'Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n%s\n' "$body"
    exit 0
  fi
}
answered="" slow=""
for ip in $(nslookup app 2>/dev/null | awk '/^Name:/ { n = 1 } n && /^Address/ { print $2 }'); do
  connects "$ip" 8080
  case $? in
    0) answered=yes; relay "$ip" ;;
    1) ;;
    *) slow="$slow $ip" ;;
  esac
done
if [ -z "$answered" ]; then
  for ip in $slow; do relay "$ip"; done
fi
printf 'Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\nno release answers\n'
