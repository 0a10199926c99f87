"""Run ``cephalo ARGS...`` and SIGKILL this very process at a chosen point (fault injection).

``FAULT_AT`` (environment):

- ``replace:N``  -- just before the N-th rename that commits a cephalo temporary (``os.replace``
  whose source or destination is a ``.<name>.<host>_<pid>_<rand>.tmp|old`` temporary, or the
  atomic exchange of a directory swap): a kill between writing and committing;
- ``replace+:N`` -- just after that rename;
- unset -- no kill (the wrapper is then plain ``cephalo``).

``FAULT_DELETE_AT=N``: the N-th image whose header ``cephalo index`` reads is deleted just before
it is read (a file removed under a running index, after the adapter listed it).

Random points in time are the test's job (it sends SIGKILL after a random delay).
"""

from __future__ import annotations

import os
import signal
import sys


def _install(spec: str) -> None:
    from cephalo.io import temp_owner

    when, _, n = spec.partition(":")
    target = int(n)
    real = os.replace
    count = 0

    def replace(src, dst, *a, **kw):
        nonlocal count
        ours = temp_owner(os.fsdecode(src)) is not None or temp_owner(os.fsdecode(dst)) is not None
        if ours:
            count += 1
            if count == target and when == "replace":
                os.kill(os.getpid(), signal.SIGKILL)
        out = real(src, dst, *a, **kw)
        if ours and count == target and when == "replace+":
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    os.replace = replace

    import cephalo.io as io

    real_exchange = io._exchange

    def exchange(a, b):
        nonlocal count
        count += 1
        if count == target and when == "replace":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real_exchange(a, b)
        if count == target and when == "replace+":
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    io._exchange = exchange


def _install_delete(n: int) -> None:
    import cephalo.datasets.base as base

    real = base.image_header
    calls = 0

    def image_header(path, *a, **kw):
        nonlocal calls
        calls += 1
        if calls == n:
            os.unlink(path)
        return real(path, *a, **kw)

    base.image_header = image_header


if __name__ == "__main__":
    if os.environ.get("FAULT_AT"):
        _install(os.environ["FAULT_AT"])
    if os.environ.get("FAULT_DELETE_AT"):
        _install_delete(int(os.environ["FAULT_DELETE_AT"]))
    from cephalo.cli import run

    sys.argv = ["cephalo", *sys.argv[1:]]
    run()
