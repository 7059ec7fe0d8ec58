"""The one rule every request of the benchmark follows: loopback addresses only."""

from __future__ import annotations

import ipaddress
import urllib.parse

LOOPBACK_HOST = "127.0.0.1"


class NotLoopback(ValueError):
    """A URL points somewhere other than this machine's loopback interface."""


def check_loopback(url: str) -> str:
    """Return the URL unchanged, or raise NotLoopback if its host is not a loopback address."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return url
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NotLoopback(f"the benchmark sends load to loopback addresses only, got {url!r}")
    return url


def check_loopback_address(address: str) -> str:
    """Return an IP address unchanged, or raise NotLoopback if it is not a loopback address."""
    if not ipaddress.ip_address(address).is_loopback:
        raise NotLoopback(f"the benchmark connects from loopback addresses only, got {address!r}")
    return address


def worker_address(index: int) -> str:
    """Return the loopback source address of load worker ``index``: 127.0.0.2, 127.0.0.3, …"""
    return str(ipaddress.ip_address("127.0.0.2") + index)
