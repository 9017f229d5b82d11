"""Refuse, and remember, every connection or name lookup a test makes beyond loopback.

Frameworks phone home on their own: LiteLLM fetches its model cost map at import, tokenizers
download their encodings, tracing clients post to their cloud. A test that does so depends on
the internet and leaks what it sends, so the framework tests install this guard (a
``sys.audit`` hook, the interpreter's own observation point for every socket) and fail when
anything was refused::

    loopback_guard.install()
    with loopback_guard.active():
        ...                                  # run the code under test
    assert not loopback_guard.take_refused()

Refused operations raise ``ConnectionRefusedError``, which libraries treat as "offline" and
usually swallow: that is why the guard also keeps a list that the test checks.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["activate", "active", "deactivate", "install", "take_refused"]

_lock = threading.Lock()
_refused: list[str] = []
_state = {"installed": False, "depth": 0}


def _is_loopback(host: object) -> bool:
    if host is None:  # getaddrinfo(None, port): the local wildcard, for binding
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _state["depth"] <= 0:
        return
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect":
        sock, address = args
        if getattr(sock, "family", None) == socket.AF_UNIX or not isinstance(address, tuple):
            return
        host = address[0]
    else:
        return
    if _is_loopback(host):
        return
    with _lock:
        _refused.append(f"{event} {host!r}")
    raise ConnectionRefusedError(f"tests reach loopback only, not {host!r}")


def install() -> None:
    """Add the audit hook (once per process; audit hooks cannot be removed)."""
    with _lock:
        if not _state["installed"]:
            sys.addaudithook(_hook)
            _state["installed"] = True


@contextmanager
def active() -> Iterator[None]:
    """Refuse non-loopback sockets inside this block (blocks nest)."""
    with _lock:
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1


def activate() -> None:
    """Refuse from now on, until :func:`deactivate` (for spans that are not one block)."""
    with _lock:
        _state["depth"] += 1


def deactivate() -> None:
    with _lock:
        _state["depth"] = max(_state["depth"] - 1, 0)


def take_refused() -> list[str]:
    """What was refused since the last call, emptying the list."""
    with _lock:
        taken = list(_refused)
        _refused.clear()
    return taken
