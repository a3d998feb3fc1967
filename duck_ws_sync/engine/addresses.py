"""How the logs write a client's address."""

from __future__ import annotations

__all__ = ["format_address"]


def format_address(host: str, port: int) -> str:
    """``host:port``, brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
