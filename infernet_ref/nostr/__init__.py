"""Identity layer: NOSTR keys, BIP-340 signatures, NIP-01 events, NIP-19, NIP-42-style auth, NIP-44 v2.

The public names below are the contract other layers and the conformance suite use
(notes/CONTRACTS.md, spec/nostr.md). Keys and signatures are bytes; events are plain dicts in
NIP-01 JSON shape.
"""

from infernet_ref.nostr.auth import AuthChallenger, auth_response, normalize_url
from infernet_ref.nostr.chunked import (
    ChunkedDecryptor,
    ChunkedEncryptor,
    chunked_decrypt,
    chunked_encrypt,
    chunked_open,
    chunked_seal,
)
from infernet_ref.nostr.errors import (
    AuthError,
    Bech32Error,
    ChunkedError,
    EventEncodingError,
    EventError,
    KeyFileError,
    KeyFormatError,
    Nip44DecryptError,
    Nip44Error,
    NostrError,
)
from infernet_ref.nostr.event import (
    check_event,
    event_id,
    serialize_event,
    sign_event,
    verify_event,
)
from infernet_ref.nostr.keys import (
    check_public_key,
    check_secret_key,
    generate_secret_key,
    load_key_file,
    public_key,
    save_key_file,
)
from infernet_ref.nostr.kinds import Kind, check_kind_rules, supersedes, verify_infernet_event
from infernet_ref.nostr.nip19 import (
    AddressPointer,
    EventPointer,
    Nip19,
    ProfilePointer,
    naddr_encode,
    nevent_encode,
    nip19_decode,
    note_encode,
    nprofile_encode,
    npub_encode,
    nsec_encode,
)
from infernet_ref.nostr.nip44 import (
    nip44_conversation_key,
    nip44_decrypt,
    nip44_encrypt,
)
from infernet_ref.nostr.schnorr import Signer, schnorr_sign, schnorr_verify

__all__ = [
    "AddressPointer",
    "AuthChallenger",
    "AuthError",
    "Bech32Error",
    "ChunkedDecryptor",
    "ChunkedEncryptor",
    "ChunkedError",
    "EventEncodingError",
    "EventError",
    "EventPointer",
    "KeyFileError",
    "KeyFormatError",
    "Kind",
    "Nip19",
    "Nip44DecryptError",
    "Nip44Error",
    "NostrError",
    "ProfilePointer",
    "Signer",
    "auth_response",
    "check_event",
    "check_kind_rules",
    "check_public_key",
    "check_secret_key",
    "chunked_decrypt",
    "chunked_encrypt",
    "chunked_open",
    "chunked_seal",
    "event_id",
    "generate_secret_key",
    "load_key_file",
    "naddr_encode",
    "nevent_encode",
    "nip19_decode",
    "nip44_conversation_key",
    "nip44_decrypt",
    "nip44_encrypt",
    "normalize_url",
    "note_encode",
    "nprofile_encode",
    "npub_encode",
    "nsec_encode",
    "public_key",
    "save_key_file",
    "schnorr_sign",
    "schnorr_verify",
    "serialize_event",
    "sign_event",
    "supersedes",
    "verify_event",
    "verify_infernet_event",
]
