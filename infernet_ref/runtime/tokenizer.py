"""Tokenizer glue: ``tokenizers`` when the checkpoint has ``tokenizer.json`` (spec/runtime.md §9).

Without a ``tokenizer.json`` the runtime works on raw token ids and :func:`load_tokenizer`
returns None. Encoding applies the tokenizer's own post-processor (so a Llama tokenizer adds its
BOS exactly as ``transformers``' fast tokenizer does); decoding skips special tokens.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from infernet_ref.runtime.errors import CheckpointError

MAX_TOKENIZER_BYTES = 64 << 20


class Tokenizer:
    def __init__(self, path: Path) -> None:
        if path.stat().st_size > MAX_TOKENIZER_BYTES:
            raise CheckpointError(f"{path} exceeds {MAX_TOKENIZER_BYTES} bytes")
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as exc:  # the Rust library raises a bare Exception subclass
            raise CheckpointError(f"{path} is not a valid tokenizer.json: {exc}") from None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids: list[int] = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        return ids

    def decode(self, ids: list[int]) -> str:
        text: str = self._tok.decode(ids, skip_special_tokens=True)
        return text


def load_tokenizer(model_dir: str | Path) -> Tokenizer | None:
    path = Path(model_dir) / "tokenizer.json"
    return Tokenizer(path) if path.is_file() else None
