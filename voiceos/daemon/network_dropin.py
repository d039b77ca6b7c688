"""The one hole in the service's network seal: a drop-in that ``voiceos install-service`` writes from the config.

The unit is sealed off the network (``PrivateNetwork=yes``, ``RestrictAddressFamilies=AF_UNIX``,
``IPAddressDeny=any``): with the embedded LM nothing leaves the machine, and no drop-in is written, so the unit and its
``systemd-analyze security`` score stay as they are. With ``dialogue.backend: openai`` the daemon must reach one
server: the drop-in leaves the network namespace (even a server on 127.0.0.1 is outside a private one), allows IP
sockets, and allows exactly the server's addresses (``IPAddressAllow`` wins over the unit's ``IPAddressDeny=any``).
A host name is resolved when the drop-in is written; its name servers are allowed too, so it can be resolved again.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from urllib.parse import urlsplit

from voiceos.config import Config
from voiceos.errors import VoiceosError

DROPIN_NAME = "50-network.conf"
LOOPBACK = ("127.0.0.0/8", "::1/128")


def allowed_addresses(base_url: str, resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The addresses the daemon may connect to, to reach ``base_url``."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return list(LOOPBACK)
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError as err:
        why = f"cannot resolve {host} to write the service's network drop-in ({err})"
        raise VoiceosError(f"dialogue.base_url: {why}") from None
    return sorted(found) + [ns for ns in _name_servers(resolv_conf) if ns not in found]


def _name_servers(resolv_conf: Path) -> list[str]:
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]


def render_dropin(config: Config) -> str | None:
    """The drop-in for ``config``, or None when the daemon needs no network (the embedded LM)."""
    dialogue = config.dialogue
    if dialogue.backend != "openai" or not dialogue.base_url:
        return None
    return "\n".join(
        [
            f"# Written by `voiceos install-service` from the config: dialogue.backend openai at {dialogue.base_url}.",
            "# The unit stays sealed off the network except for exactly these addresses (IPAddressDeny=any).",
            "[Service]",
            "PrivateNetwork=no",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            f"IPAddressAllow={' '.join(allowed_addresses(dialogue.base_url))}",
            "",
        ]
    )
