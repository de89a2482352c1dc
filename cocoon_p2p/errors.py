"""The typed error family every layer raises.

Network input never escapes as KeyError/TypeError/ValueError: decoders and
handshakes translate whatever went wrong into one of these, so a connection
handler can catch ``ProtocolError`` and close just that connection.
"""

from __future__ import annotations


class CocoonError(Exception):
    """Base of every error this package raises on purpose."""


class ProtocolError(CocoonError):
    """The remote side broke the wire protocol; close the connection.

    ``code`` is the stable wire error code documented in docs/PROTOCOL.md.
    """

    code: str = "protocol"


class FramingError(ProtocolError):
    code = "framing"


class HandshakeError(ProtocolError):
    code = "handshake"


class DecryptError(ProtocolError):
    """A Noise transport message failed authentication (tampered or out of order)."""

    code = "decrypt"


class CodecError(ProtocolError):
    """A message did not decode to a valid map of the expected shape."""

    code = "codec"


class LimitExceeded(ProtocolError):
    code = "limit"


class PeerIdMismatch(HandshakeError):
    """An outbound dial reached a peer whose identity is not the one expected."""

    code = "peer_id_mismatch"


class RemoteError(CocoonError):
    """The remote handler answered with an error; ``code`` says which."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ConnectionClosed(CocoonError):
    """The connection went away while a call or stream was using it."""


class ConfigError(CocoonError):
    """The user's configuration or command line is wrong; the message says how to fix it."""


def find_exception(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` inside (possibly nested) exception groups, as trio nurseries raise them."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_exception(inner, kind)
            if found is not None:
                return found
    return None
