"""Python `requests` through a proxy, for h3fleet's local proxy tests.

Usage: requests_get.py PROXY_URL URL [NAME:VALUE ...]
Prints one JSON object per request: status, headers (lower-case names), body.
With H3FLEET_REPEAT=N, sends N requests on one requests.Session (keep-alive).
"""
import json
import os
import sys

import requests


def main():
    proxy, url, *pairs = sys.argv[1:]
    headers = dict(p.split(":", 1) for p in pairs)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(int(os.environ.get("H3FLEET_REPEAT", "1"))):
            r = session.get(url, headers=headers, proxies={"http": proxy, "https": proxy}, timeout=30)
            print(json.dumps({
                "status": r.status_code,
                "headers": {k.lower(): v for k, v in r.headers.items()},
                "body": r.text,
            }), flush=True)


if __name__ == "__main__":
    main()
