"""The gateway's batcher (actors/gateway.py): one call per loop turn per host method,
at most `window` calls in flight, each caller answered with its own result, and a call
that fails or never answers fails every caller in it (and frees its place)."""

import asyncio

import pytest

from actors.gateway import _Batcher


def _unanswered_calls():
    """A host method that answers nothing by itself: (the calls' futures, send)."""
    pending: list[asyncio.Future] = []

    def send(items):
        fut = asyncio.get_running_loop().create_future()
        pending.append(fut)
        return fut

    return pending, send


async def test_submits_of_one_loop_turn_travel_as_one_call_and_each_gets_its_own_result():
    calls = []

    def send(items, more):
        calls.append((items, more))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result([f"{i}/{m}" for i, m in zip(items, more)])
        return fut

    batcher = _Batcher(send)
    first = [batcher.submit(i, i * 10) for i in range(5)]
    assert await asyncio.gather(*first) == [f"{i}/{i * 10}" for i in range(5)]
    second = [batcher.submit(i, 0) for i in range(3)]
    assert await asyncio.gather(*second) == ["0/0", "1/0", "2/0"]
    assert calls == [([0, 1, 2, 3, 4], [0, 10, 20, 30, 40]), ([0, 1, 2], [0, 0, 0])]


async def test_a_full_batch_goes_at_once_and_a_coroutine_send_works_too():
    sizes = []

    async def send(items):
        sizes.append(len(items))
        await asyncio.sleep(0)
        return [i * 2 for i in items]

    batcher = _Batcher(send, max_batch=4)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(10))) == [i * 2 for i in range(10)]
    assert sizes == [4, 4, 2]


async def test_a_failed_call_fails_every_caller_in_it():
    def send(items):
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(ConnectionError("host gone"))
        return fut

    batcher = _Batcher(send)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_call_with_no_reply_in_time_fails_its_callers_with_a_timeout():
    pending, send = _unanswered_calls()

    batcher = _Batcher(send, timeout_s=0.05)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.gather(*(batcher.submit(i) for i in range(3)))
    assert pending[0].cancelled(), "the call itself is given up"


async def test_what_arrives_while_the_window_is_full_goes_in_one_call_when_a_reply_comes():
    pending = []

    def send(items):
        fut = asyncio.get_running_loop().create_future()
        pending.append((items, fut))
        return fut

    batcher = _Batcher(send, window=1)
    first = batcher.submit(0)
    await asyncio.sleep(0)
    later = []
    for n in range(1, 6):             # five loop turns while the first call is out
        later.append(batcher.submit(n))
        await asyncio.sleep(0)
    assert [items for items, _ in pending] == [[0]], "one call in flight"
    pending[0][1].set_result(["a"])
    assert await first == "a"
    assert [items for items, _ in pending] == [[0], [1, 2, 3, 4, 5]], "the rest as one call"
    pending[1][1].set_result(list("bcdef"))
    assert await asyncio.gather(*later) == list("bcdef")
    assert batcher.in_flight == 0


async def test_a_failed_or_timed_out_call_frees_its_place_in_the_window():
    pending = []

    def send(items):
        fut = asyncio.get_running_loop().create_future()
        pending.append(fut)
        if len(pending) == 1:
            fut.set_exception(ConnectionError("host gone"))
        return fut

    batcher = _Batcher(send, window=1, timeout_s=0.05)
    with pytest.raises(ConnectionError):
        await batcher.submit(0)
    with pytest.raises(asyncio.TimeoutError):        # the second call never answers
        await batcher.submit(1)
    third = batcher.submit(2)
    await asyncio.sleep(0)
    assert len(pending) == 3 and batcher.in_flight == 1
    pending[2].set_result(["ok"])
    assert await third == "ok"


async def test_without_a_window_every_loop_turn_sends_its_own_call():
    pending, send = _unanswered_calls()

    batcher = _Batcher(send, window=0)
    for n in range(3):
        batcher.submit(n)
        await asyncio.sleep(0)
    assert len(pending) == 3 and batcher.in_flight == 3
    for fut in pending:
        fut.set_result([None])
