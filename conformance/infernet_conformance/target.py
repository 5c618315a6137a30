"""What the suite runs against: the addresses of one node under test.

A target is given on the command line as one or more ``--target`` values, each a URL whose scheme
says which layer it addresses::

    --target ws://127.0.0.1:8765          # WebSocket endpoint (echo for ws.*, node for job.*)
    --target udp://127.0.0.1:4000         # DHT endpoint
    --target http://127.0.0.1:8765        # plain HTTP on the same server (node info)
    --target content=ws://127.0.0.1:9000  # a named endpoint when one scheme serves several layers

A case asks for the endpoint it needs with :meth:`Target.require`; a missing endpoint skips the
case with a reason instead of failing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

_SCHEMES = {"ws": "ws", "wss": "ws", "udp": "dht", "http": "http", "https": "http"}


class TargetError(ValueError):
    """A ``--target`` value could not be understood."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        if port is None:
            raise TargetError(f"{self.url} has no port")
        return port

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme


@dataclass(frozen=True)
class Target:
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: list[str]) -> Target:
        endpoints: dict[str, Endpoint] = {}
        for raw in values:
            name, sep, url = raw.partition("=")
            if not sep:
                name, url = "", raw
            parts = urlsplit(url)
            if parts.scheme not in _SCHEMES or not parts.hostname:
                raise TargetError(
                    f"cannot use target {raw!r}: expected ws://, wss://, udp:// or http:// with a host"
                )
            if parts.port is None:
                raise TargetError(f"target {raw!r} has no port")
            key = name or _SCHEMES[parts.scheme]
            endpoints[key] = Endpoint(key, url)
        return cls(endpoints)

    def get(self, name: str) -> Endpoint | None:
        return self.endpoints.get(name)

    def describe(self) -> dict[str, str]:
        return {k: v.url for k, v in sorted(self.endpoints.items())}
