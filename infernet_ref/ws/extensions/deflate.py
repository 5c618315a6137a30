"""permessage-deflate (RFC 7692): negotiation of its four parameters and the per-message codec.

Theory of operation. Negotiation is pure data: a client builds an offer from a
:class:`DeflateConfig`, the server picks the first acceptable offer and answers with the
parameters in force, and the client checks the answer against its offer (§7.1). Both ends then
hold a :class:`PerMessageDeflate` whose "local" side is what *we* compress and "remote" side
what we decompress. A compressed message has RSV1 on its first frame; its payload is the DEFLATE
stream of the message flushed with ``Z_SYNC_FLUSH`` minus the trailing ``00 00 ff ff`` (§7.2.1).
Decompression is bounded: at most ``budget + 1`` bytes are produced for a message whose limit is
``budget``, so a "zip bomb" costs no more memory than the message limit (1009 otherwise).

zlib refuses a raw-deflate window of 8 bits for *compression*, so an offer that would make us
compress with an 8-bit window is declined (server) or fails the handshake (client); we
decompress 8-bit windows with a 9-bit window, which is always safe.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from infernet_ref.ws.errors import HandshakeError, WebSocketProtocolError

NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_BITS_RE = re.compile(r"[1-9][0-9]?")  # §7.1.2: decimal integer, no leading zeros
_PARAMS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)
MESSAGE_TOO_BIG = 1009
INVALID_DATA = 1007  # a message that does not decompress is invalid payload data (§7.2.2)


@dataclass(frozen=True, slots=True)
class DeflateConfig:
    """What this endpoint asks for or accepts (RFC 7692 §7.1); ``None`` = no constraint."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    level: int = 6
    mem_level: int = 8
    min_size: int = 32  # messages shorter than this are sent uncompressed (RSV1 clear)

    def __post_init__(self) -> None:
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if bits is not None and not 9 <= bits <= 15:
                raise ValueError("max_window_bits must be 9..15 (zlib cannot compress with 8)")


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The parameters in force after negotiation (RFC 7692 §7.1), as seen from one endpoint."""

    local_no_context_takeover: bool
    remote_no_context_takeover: bool
    local_max_window_bits: int
    remote_max_window_bits: int


def _parse_params(params: list[tuple[str, str | None]], *, response: bool) -> dict[str, int | None]:
    """Validate parameter names, values and uniqueness (RFC 7692 §7.1); raise ``ValueError``."""
    out: dict[str, int | None] = {}
    for name, value in params:
        if name not in _PARAMS:
            raise ValueError(f"unknown permessage-deflate parameter {name!r}")
        if name in out:
            raise ValueError(f"duplicate permessage-deflate parameter {name!r}")
        if name.endswith("context_takeover"):
            if value is not None:
                raise ValueError(f"{name} takes no value")
            out[name] = None
            continue
        if value is None:
            if name == "server_max_window_bits" or response:
                raise ValueError(f"{name} needs a value")
            out[name] = None
            continue
        if not _BITS_RE.fullmatch(value) or not 8 <= int(value) <= 15:
            raise ValueError(f"{name}={value} is not an integer 8..15")
        out[name] = int(value)
    return out


def client_offer(config: DeflateConfig) -> list[tuple[str, str | None]]:
    """The parameters of the client's offer (RFC 7692 §7.1)."""
    params: list[tuple[str, str | None]] = []
    if config.server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if config.client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if config.server_max_window_bits is not None:
        params.append(("server_max_window_bits", str(config.server_max_window_bits)))
    bits = config.client_max_window_bits
    params.append(("client_max_window_bits", None if bits is None else str(bits)))
    return params


def server_accept(
    offers: list[list[tuple[str, str | None]]], config: DeflateConfig
) -> tuple[list[tuple[str, str | None]], DeflateParams] | None:
    """Pick the first acceptable offer (RFC 7692 §7.1): the response parameters and our params."""
    for raw in offers:
        try:
            offer = _parse_params(raw, response=False)
        except ValueError:
            continue  # §7.1: decline an offer with invalid parameters, try the next one
        server_bits = offer.get("server_max_window_bits")
        if server_bits == 8:
            continue  # we cannot compress with an 8-bit window; decline
        if config.server_max_window_bits is not None:
            server_bits = min(server_bits or 15, config.server_max_window_bits)
        client_bits: int | None = None
        if "client_max_window_bits" in offer:
            client_bits = offer["client_max_window_bits"]
            if config.client_max_window_bits is not None:
                client_bits = min(client_bits or 15, config.client_max_window_bits)
        elif config.client_max_window_bits is not None:
            pass  # the client did not say it supports the hint; it keeps a 15-bit window
        server_nct = "server_no_context_takeover" in offer or config.server_no_context_takeover
        client_nct = "client_no_context_takeover" in offer or config.client_no_context_takeover
        response: list[tuple[str, str | None]] = []
        if server_nct:
            response.append(("server_no_context_takeover", None))
        if client_nct:
            response.append(("client_no_context_takeover", None))
        if server_bits is not None:
            response.append(("server_max_window_bits", str(server_bits)))
        if client_bits is not None:
            response.append(("client_max_window_bits", str(client_bits)))
        return response, DeflateParams(server_nct, client_nct, server_bits or 15, client_bits or 15)
    return None


def client_accept(response: list[tuple[str, str | None]], config: DeflateConfig) -> DeflateParams:
    """Check the server's answer against our offer (RFC 7692 §7.1); raise :class:`HandshakeError`."""
    try:
        params = _parse_params(response, response=True)
    except ValueError as exc:
        raise HandshakeError(f"server answered permessage-deflate badly: {exc}") from None
    server_bits = params.get("server_max_window_bits")
    limit = config.server_max_window_bits
    if limit is not None and (server_bits is None or server_bits > limit):
        raise HandshakeError("server ignored our server_max_window_bits (RFC 7692 §7.1.2.1)")
    if config.server_no_context_takeover and "server_no_context_takeover" not in params:
        raise HandshakeError("server ignored our server_no_context_takeover (RFC 7692 §7.1.1.1)")
    client_bits = params.get("client_max_window_bits")
    if client_bits == 8:
        raise HandshakeError(
            "server asked for an 8-bit client window, which zlib cannot compress with"
        )
    if config.client_max_window_bits is not None and client_bits is not None:
        client_bits = min(client_bits, config.client_max_window_bits)
    return DeflateParams(
        "client_no_context_takeover" in params or config.client_no_context_takeover,
        "server_no_context_takeover" in params,
        client_bits or config.client_max_window_bits or 15,
        server_bits or 15,
    )


class PerMessageDeflate:
    """The per-message codec (RFC 7692 §7.2) for one connection."""

    __slots__ = ("_compressor", "_config", "_decompressor", "params")

    def __init__(self, params: DeflateParams, config: DeflateConfig) -> None:
        self.params = params
        self._config = config
        self._compressor = self._new_compressor()
        self._decompressor = self._new_decompressor()

    def _new_compressor(self) -> zlib._Compress:
        bits = self.params.local_max_window_bits
        return zlib.compressobj(self._config.level, zlib.DEFLATED, -bits, self._config.mem_level)

    def _new_decompressor(self) -> zlib._Decompress:
        return zlib.decompressobj(-max(9, self.params.remote_max_window_bits))

    def should_compress(self, size: int) -> bool:
        """Whether a message of ``size`` bytes is worth compressing."""
        return size >= self._config.min_size

    def compress(self, data: bytes | bytearray | memoryview, fin: bool = True) -> bytes:
        """Compress one fragment of a message (§7.2.1); ``fin`` ends the message."""
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if not fin:
            return out
        if out.endswith(_TAIL):
            out = out[:-4]
        if self.params.local_no_context_takeover:
            self._compressor = self._new_compressor()
        return out

    def decompress(self, data: bytes, fin: bool, budget: int) -> bytes:
        """Inflate one fragment (§7.2.2), producing at most ``budget`` bytes or failing with 1009."""
        d = self._decompressor
        try:
            out = d.decompress(data, budget + 1)
            if len(out) <= budget and fin and not d.unconsumed_tail:
                out += d.decompress(_TAIL, budget + 1 - len(out))
        except zlib.error as exc:
            raise WebSocketProtocolError(
                f"peer sent undecodable compressed data: {exc}", INVALID_DATA
            ) from None
        if len(out) > budget or d.unconsumed_tail:
            raise WebSocketProtocolError(
                f"peer's compressed message inflates beyond the {budget}-byte limit",
                MESSAGE_TOO_BIG,
            )
        if d.eof:
            # §7.2.3.4: a block with BFINAL set ends the stream; what follows it (the appended
            # 00 00 ff ff, the RFC example's padding byte) is not data, and the next message
            # starts a new stream.
            self._decompressor = self._new_decompressor()
        elif fin and self.params.remote_no_context_takeover:
            self._decompressor = self._new_decompressor()
        return out
