"""Ed25519 identities, peer ids and the key file (DESIGN.md §4-§5)."""

from .keys import Identity, PeerId, verify_signature
from .keystore import default_data_dir, load_identity, load_or_create_identity, save_identity

__all__ = [
    "Identity",
    "PeerId",
    "default_data_dir",
    "load_identity",
    "load_or_create_identity",
    "save_identity",
    "verify_signature",
]
