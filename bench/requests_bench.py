"""make bench: the Python contender, requests.Session (kept-alive connections) + .json().

Run with Debian's /usr/bin/python3 and python3-requests:
    requests_bench.py BASE TOKEN USER_ID [CA]   20 warm-up calls, then for each line of stdin (a
                                                number of seconds) calls for that long and prints
                                                RESULT {"calls": N, "seconds": S}, as
                                                bench/common.lua's serve
"""
import json
import sys
import time

import requests


def main():
    base, token, user_id = sys.argv[1], sys.argv[2], sys.argv[3]
    verify = sys.argv[4] if len(sys.argv) > 4 else True
    session = requests.Session()
    url = base + "/me"

    def me():
        r = session.get(url, params={"fields": "id,username", "access_token": token},
                        verify=verify, timeout=10, allow_redirects=False)
        r.raise_for_status()
        user = r.json()
        if user["id"] != user_id:
            raise RuntimeError("wrong id")

    for _ in range(20):
        me()
    for line in sys.stdin:
        slice_seconds = float(line)
        calls, t0, elapsed = 0, time.perf_counter(), 0.0
        while elapsed < slice_seconds:
            me()
            calls += 1
            elapsed = time.perf_counter() - t0
        print("RESULT " + json.dumps({"calls": calls, "seconds": elapsed}), flush=True)


main()
