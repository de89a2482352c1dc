"""cocoon-p2p: a peer-to-peer market for private AI inference paid in TON."""

__version__ = "0.1.0"
PROTOCOL_ID = b"cocoon-p2p/1"
