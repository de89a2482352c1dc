"""Offers: signing, validation, publication in the DHT, and what find_offers returns."""

from __future__ import annotations

import pytest
import trio

from cocoon_p2p.dht import PROVIDER_RECORD, RecordRejected, model_key, sign_record
from cocoon_p2p.errors import RemoteError
from cocoon_p2p.identity import Identity
from cocoon_p2p.inference.capability import Capability, GpuInfo
from cocoon_p2p.market import (
    DirectRfqTransport,
    MessageRejected,
    ModelInfo,
    Offer,
    Prices,
    find_offers,
    publish_offer,
)
from cocoon_p2p.market.offer import install_offer_validator, offer_from_record
from cocoon_p2p.wire import codec
from tests.dht.helpers import dht_network
from tests.market.helpers import GEMMA, MODEL, SHA, ManualClock, WorkerSpec, make_worker

NOW = 1_800_000_000
NAN = float("nan")


def make_offer(identity: Identity, *, expires: int, prices: Prices = Prices(20, 60), **kw: object) -> Offer:
    args: dict = {
        "addrs": ["127.0.0.1:7401"],
        "models": [GEMMA],
        "prices": prices,
        "max_jobs": 2,
        "started_at": min(NOW, expires),
        "expires": expires,
        "wallet": "EQ-wallet",
    }
    args.update(kw)
    return Offer.create(identity, **args)


def test_offer_round_trip_groups_gpus_from_a_capability_and_fits_a_dht_record() -> None:
    worker = Identity.generate()
    cap = Capability(kind="gpu", gpus=[GpuInfo("NVIDIA A100", 40960, "550")] * 4, cpu_model="EPYC", cpu_cores=64)
    offer = make_offer(worker, expires=NOW + 3600, hardware=cap.to_dict(), attestation=b"q" * 512)
    again = Offer.decode(offer.raw)
    assert again == offer
    assert again.worker_id == worker.peer_id
    assert [(g.name, g.vram_mb, g.count) for g in again.gpus] == [("NVIDIA A100", 40960, 4)]
    assert again.cpu is not None and again.cpu.cores == 64
    assert again.model(MODEL) == GEMMA and again.model("other") is None
    assert again.prices == Prices(20, 60) and again.uptime_target_bp == 9900 and again.attestation == b"q" * 512
    cpu_only = make_offer(worker, expires=NOW + 3600, hardware={"cpu": {"model": "Xeon", "cores": 8, "ram_mb": 1024}})
    assert cpu_only.gpus == () and cpu_only.cpu is not None and cpu_only.cpu.model == "Xeon"
    # The largest offer we allow still fits a DHT record; a bigger one is refused at creation.
    models = [ModelInfo(f"model-{i:02d}-" + "x" * 80, SHA, 8192, 12.5) for i in range(16)]
    with pytest.raises(ValueError):
        make_offer(worker, expires=NOW + 3600, models=models, attestation=b"q" * 2048)
    big = make_offer(worker, expires=NOW + 3600, models=models[:8])
    record = sign_record(worker, PROVIDER_RECORD, model_key(models[0].name), big.raw, seq=1, expires=NOW + 3600)
    assert record.encoded_size() <= 4096


def test_offer_records_with_bad_signatures_fields_or_expiry_are_refused() -> None:
    worker, mallory = Identity.generate(), Identity.generate()
    key = model_key(MODEL)
    good = make_offer(worker, expires=NOW + 3600)

    def record(publisher: Identity, value: bytes, rkey: bytes = key):
        return sign_record(publisher, PROVIDER_RECORD, rkey, value, seq=1, expires=NOW + 3600)

    assert offer_from_record(record(worker, good.raw), NOW) == good
    env = codec.unpack(good.raw)
    body = codec.unpack(env["body"])
    cheaper = codec.pack({**env, "body": codec.pack({**body, "prompt": 1})})
    bad = {
        "tampered offer": record(worker, cheaper),
        "someone else's offer": record(mallory, good.raw),
        "not under its model's key": record(worker, good.raw, model_key("another-model")),
        "expired offer": record(worker, make_offer(worker, expires=NOW - 1).raw),
        "offer valid for a year": record(worker, make_offer(worker, expires=NOW + 365 * 86400).raw),
        "not an offer": record(worker, b"offer"),
        "empty model list": record(worker, _resign(worker, body, models=[])),
        "no address": record(worker, _resign(worker, body, addrs=[])),
        "negative price": record(worker, _resign(worker, body, prompt=-5)),
        "nan tokens/s": record(worker, _resign(worker, body, models=[{**body["models"][0], "tokens_per_s": NAN}])),
    }
    for name, rec in bad.items():
        try:
            offer_from_record(rec, NOW)
        except RecordRejected:
            continue
        pytest.fail(f"accepted: {name}")
    with pytest.raises(MessageRejected):
        Offer.decode(cheaper)


def _resign(identity: Identity, body: dict, **changes: object) -> bytes:
    from cocoon_p2p.market.envelope import seal

    return seal(identity, "offer", {**body, **changes})


async def test_find_offers_returns_only_valid_unexpired_offers_one_per_worker() -> None:
    async with dht_network(8) as peers:
        lenient = peers[-1]  # an old or hostile peer that stores whatever it is given
        for peer in peers[:-1]:
            install_offer_validator(peer.dht)
        clock = peers[0].dht.clock
        now = int(clock.now())
        honest, short_lived, mallory = peers[1], peers[2], Identity.generate()

        first = make_offer(honest.host.identity, expires=now + 3600, prices=Prices(30, 90))
        assert await publish_offer(honest.dht, first) > 0
        latest = make_offer(honest.host.identity, expires=now + 7200, prices=Prices(25, 80))
        assert await publish_offer(honest.dht, latest) > 0
        brief = make_offer(short_lived.host.identity, expires=now + 2, prices=Prices(1, 1))
        assert await publish_offer(short_lived.dht, brief) > 0

        key = model_key(MODEL)
        body = codec.unpack(codec.unpack(latest.raw)["body"])
        forged = _resign(mallory, {**body, "worker": honest.host.identity.public_key, "prompt": 1})
        stolen = sign_record(mallory, PROVIDER_RECORD, key, latest.raw, seq=1, expires=now + 3600)
        bad_sig = sign_record(mallory, PROVIDER_RECORD, key, forged, seq=1, expires=now + 3600)
        stale = make_offer(mallory, expires=now - 10)
        expired = sign_record(mallory, PROVIDER_RECORD, key, stale.raw, seq=2, expires=now + 3600)
        for rec in (stolen, bad_sig, expired):
            for target in peers[:-1]:
                conn = await lenient.host.connect(target.host.listen_address, expected=target.host.peer_id)
                with pytest.raises(RemoteError) as info:
                    await conn.call("dht.store", {"record": rec.to_wire()})
                assert info.value.code == "record_rejected"
        for rec in (stolen, bad_sig, expired):
            lenient.dht.store.put(rec, clock.now())
        assert len(lenient.dht.store.get(key, clock.now())) >= 2  # it will serve the bad ones

        offers = await find_offers(peers[5].dht, MODEL)
        by_worker = {o.worker_id: o for o in offers}
        assert len(offers) == len(by_worker) == 2
        assert by_worker[honest.host.peer_id] == latest
        assert offers[0] == brief  # cheapest first

        while clock.now() <= brief.expires:
            await trio.sleep(0.1)
        offers = await find_offers(peers[6].dht, MODEL)
        assert offers == [latest]
        assert await find_offers(peers[6].dht, "nobody-serves-this") == []


def test_validator_uses_the_dht_clock() -> None:
    clock = ManualClock(NOW)
    worker = Identity.generate()
    offer = make_offer(worker, expires=NOW + 60)
    rec = sign_record(worker, PROVIDER_RECORD, model_key(MODEL), offer.raw, seq=1, expires=NOW + 60)
    assert offer_from_record(rec, clock.now()) == offer
    clock.t += 61
    with pytest.raises(RecordRejected):
        offer_from_record(rec, clock.now())


async def test_worker_market_refreshes_its_offer_and_stops_republishing_when_stopped() -> None:
    async with dht_network(4) as peers:
        for peer in peers:
            install_offer_validator(peer.dht)
        worker_peer = peers[1]
        transport = DirectRfqTransport(worker_peer.host, worker_peer.dht)
        worker = make_worker(worker_peer, transport, WorkerSpec(Prices(5, 9)))
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(worker.run)
                first = worker.offer
                assert first is not None and await find_offers(peers[2].dht, MODEL) == [first]
                assert first.addrs == (worker_peer.host.listen_address,) and first.max_jobs == 2
                await trio.sleep(1.1)  # the next offer must expire later, at one-second resolution
                second = await worker.refresh_offer()
                assert second.expires > first.expires
                assert await find_offers(peers[3].dht, MODEL) == [second]
                scope.cancel()
        assert (PROVIDER_RECORD, model_key(MODEL)) not in worker_peer.dht.published
