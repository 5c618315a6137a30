"""The content exchange (spec/content.md §7): wire format, sans-I/O sessions, asyncio adapters."""

from infernet_ref.content.exchange.client import ExchangeClient, FetchStats
from infernet_ref.content.exchange.server import CONTENT_PATH, ContentServer, serve_content
from infernet_ref.content.exchange.session import ClientSession, ServerSession

__all__ = [
    "CONTENT_PATH",
    "ClientSession",
    "ContentServer",
    "ExchangeClient",
    "FetchStats",
    "ServerSession",
    "serve_content",
]
