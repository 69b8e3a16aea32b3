"""server/durability.py: the commitments a routing leaves, and who waits for them."""

from __future__ import annotations

import asyncio

from xmppcore.server import durability


async def test_promises_go_to_the_routing_under_way_and_nowhere_outside_one() -> None:
    loop = asyncio.get_running_loop()
    outside: asyncio.Future[None] = loop.create_future()
    assert durability.promise(outside) is False  # nobody collects: the caller waits itself
    assert durability.unfinished() is None
    with durability.collecting() as commitments:
        write: asyncio.Future[None] = loop.create_future()
        assert durability.unfinished() is None  # nothing promised yet
        assert durability.promise(write) is True
        assert durability.unfinished() is commitments and not commitments.done
    assert durability.unfinished() is None  # restored on exit
    write.set_result(None)
    assert commitments.done


async def test_tasks_started_by_a_routing_promise_to_it() -> None:
    loop = asyncio.get_running_loop()
    write: asyncio.Future[None] = loop.create_future()
    with durability.collecting() as commitments:
        started = asyncio.ensure_future(asyncio.sleep(0, result=durability.promise(write)))
    assert await started is True  # the task copied the context it was started in
    assert not commitments.done
    write.set_result(None)
    assert commitments.done


async def test_collections_nest_and_each_sees_its_own() -> None:
    loop = asyncio.get_running_loop()
    with durability.collecting() as outer:
        with durability.collecting() as inner:
            durability.promise(loop.create_future())
        assert durability.unfinished() is None and outer.done and not inner.done


async def test_wait_and_when_done_come_after_every_commitment_failed_or_not() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    called: list[str] = []
    with durability.collecting() as commitments:
        durability.promise(first)
    commitments.when_done(lambda: called.append("done"))
    waiting = asyncio.ensure_future(commitments.wait())
    first.set_exception(OSError("disk full"))  # the module that promised it reports it
    first.exception()
    with commitments:
        durability.promise(second)  # promised later, by the same routing: waited for too
    await asyncio.sleep(0)
    assert called == [] and not waiting.done()
    second.set_result(None)
    await waiting  # never raises for a failed commitment
    assert called == ["done"] and commitments.done


async def test_when_done_on_finished_commitments_calls_at_once() -> None:
    called: list[int] = []
    commitments = durability.collecting()
    commitments.when_done(lambda: called.append(1))
    assert called == [1]
