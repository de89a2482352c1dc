"""Wire: Noise handshake and transport, framing, msgpack codec, limits (DESIGN.md §3-§4)."""
