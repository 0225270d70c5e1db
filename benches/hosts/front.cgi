#!/bin/sh
# A host's front (/front/cgi-bin/index.cgi in the app's image, so busybox
# httpd runs it for `/`): relays GET / to what answers to the name `app` on
# its network. Two containers answer to it for a moment while a release takes
# over: an address that does not answer is passed over for the next, as
# nginx's `proxy_next_upstream` does. (busybox is static: its wget cannot use
# docker's DNS, nslookup can.)
for ip in $(nslookup app 2>/dev/null | awk '/^Name:/ { n = 1 } n && /^Address/ { print $2 }'); do
  if body=$(timeout 2 wget -q -O - "http://$ip:8080/" 2>/dev/null); then
    printf 'Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n%s\n' "$body"
    exit 0
  fi
done
printf 'Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\nno release answers\n'
