"""The test project served the way gunicorn does it: a master forks workers, with --preload (Django set
up in the master, inherited) or without (each worker sets Django up itself). Each worker serves one
request and waits for its refresher's first fetch. Prints {"master": pid, "workers": [pid, ...]}."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", ".."), os.path.join(HERE, "..", "standins"), os.path.join(HERE, "..")]

preload = sys.argv[1] == "preload"
if preload:
    import django

    django.setup()


def worker() -> int:
    import django
    from django.test import Client

    if not preload:
        django.setup()
    from keyd_openedx.ida import keyset

    follower = keyset.current()
    before = follower.last_success
    if follower.refresher_running:
        return 3  # a thread of the master cannot be running here
    Client().get("/")  # the worker's first request
    deadline = time.monotonic() + 10
    while follower.last_success == before:  # the refresher's first fetch has been answered
        if time.monotonic() > deadline:
            return 4
        time.sleep(0.02)
    return 0 if follower.refresher_running else 5


pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = worker()
        finally:
            os._exit(code)
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
print(json.dumps({"master": os.getpid(), "workers": pids, "codes": codes}))
sys.exit(0 if codes == [0, 0] else 1)
