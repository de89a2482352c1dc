"""`ask` and `chat`: buy completions from the network with a short-lived client peer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from ..client.types import ChatMessage, CompletionRequest, CompletionResult
from ..errors import ConfigError
from ..identity import default_data_dir, load_or_create_identity
from ..identity.keystore import ensure_data_dir
from ..node.config import load_config
from ..node.peer import Peer


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    ask = sub.add_parser(
        "ask",
        help="ask the network one question",
        description="Join the network as a client, auction the job, stream the answer, pay, and exit. "
        "The worker, price and token counts go to stderr.",
    )
    _client_args(ask, add_common)
    ask.add_argument("prompt", help="the question (a chat message)")
    ask.set_defaults(handler=cmd_ask)
    chat = sub.add_parser("chat", help="interactive chat; every turn is auctioned and paid")
    _client_args(chat, add_common)
    chat.set_defaults(handler=cmd_chat)


def _client_args(parser: argparse.ArgumentParser, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    add_common(parser)
    parser.add_argument("--model", default="gemma3-270m", help="model id (default gemma3-270m)")
    parser.add_argument("--bootstrap", type=Path, help="bootstrap list (else the node's cached peers)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--chain", help="host:port of a `cocoon-p2p chain` service (pay with TON channels)")


@asynccontextmanager
async def client_peer(args: argparse.Namespace) -> AsyncIterator[Peer]:
    data_dir = args.data_dir or default_data_dir()
    overrides = {"roles": ["client"], "listen": "127.0.0.1:0", "admin_listen": "", "bootstrap": args.bootstrap}
    if args.chain:
        overrides["chain"] = args.chain
    config = load_config(data_dir=data_dir, overrides={k: v for k, v in overrides.items() if v is not None})
    config.admin_listen = ""
    ensure_data_dir(config.data_dir)
    peer = Peer(config, load_or_create_identity(config.data_dir))
    if not peer.bootstrap_entries():
        raise ConfigError("no peers to join: pass --bootstrap FILE (see bootstrap/README.md)")
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        await peer.joined.wait()
        if not len(peer.dht.table):
            raise ConfigError("could not reach any bootstrap peer; is the network up?")
        yield peer
        nursery.cancel_scope.cancel()


async def _stream_answer(peer: Peer, request: CompletionRequest) -> CompletionResult:
    assert peer.client is not None
    async with peer.client.client.stream_completion(request) as stream:
        async for delta in stream:
            print(delta.text, end="", flush=True)
    print()
    assert stream.result is not None
    return stream.result


def _footer(result: CompletionResult) -> str:
    return (
        f"[worker {result.worker[:12]}… | {result.prompt_tokens}+{result.completion_tokens} tokens | "
        f"price {result.price.prompt_per_million}/{result.price.completion_per_million} nanoTON per 1M | "
        f"paid {result.cost_nanoton} nanoTON]"
    )


def cmd_ask(args: argparse.Namespace) -> int:
    async def main() -> None:
        async with client_peer(args) as peer:
            request = CompletionRequest(
                model=args.model,
                messages=(ChatMessage("user", args.prompt),),
                max_tokens=args.max_tokens,
                temperature=args.temperature,
            )
            result = await _stream_answer(peer, request)
            print(_footer(result), file=sys.stderr)

    trio.run(main)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    async def main() -> None:
        async with client_peer(args) as peer:
            history: list[ChatMessage] = []
            print(
                f"chatting with {args.model} on the cocoon-p2p network; empty line or Ctrl-D to quit", file=sys.stderr
            )
            while True:
                try:
                    line = await trio.to_thread.run_sync(input, "you> ")
                except EOFError:
                    break
                if not line.strip():
                    break
                history.append(ChatMessage("user", line))
                request = CompletionRequest(
                    model=args.model, messages=tuple(history), max_tokens=args.max_tokens, temperature=args.temperature
                )
                result = await _stream_answer(peer, request)
                history.append(ChatMessage("assistant", result.text))
                print(_footer(result), file=sys.stderr)

    trio.run(main)
    return 0
