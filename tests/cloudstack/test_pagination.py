"""Pagination per CloudStack: empty ``{}``, past the end, count drift, swapped rows, bounds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
import respx
from paths import FIXTURES

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import NotJsonError, ParameterError
from sidecar.cloudstack.limits import ClientLimits
from sidecar.support.settings import Settings

ENDPOINT = "http://127.0.0.1:8080/client/api"


async def _no_sleep(seconds: float) -> None:
    return None


def make_client(transport: httpx.AsyncBaseTransport | None = None, **overrides) -> CloudStackClient:
    values = {"requests_per_second": 1000.0, **overrides}
    return CloudStackClient(
        CloudStackConfig(endpoint=ENDPOINT, key="page-test-key", secret="page-test-secret"),
        limits=ClientLimits.from_settings(Settings(**values)),
        transport=transport,
        sleep=_no_sleep,
    )


def constructed(name: str) -> dict:
    data = json.loads((FIXTURES / "constructed" / name).read_text())
    data.pop("_constructed")
    return data


class Table:
    """A server-side list of alerts served page by page, as BaseListCmd does."""

    def __init__(self, total: int) -> None:
        self.rows = [{"id": f"a{n:05d}", "type": 8, "name": "ALERT.USERVM"} for n in range(total)]
        self.pages: list[tuple[int, int]] = []  # (page, pagesize) of every request
        self.on_request: Callable[[int], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        page, size = int(params["page"]), int(params["pagesize"])
        self.pages.append((page, size))
        if self.on_request is not None:
            self.on_request(page)
        if not self.rows:
            return httpx.Response(200, json={"listalertsresponse": {}})
        chunk = self.rows[(page - 1) * size : page * size]
        inner: dict = {"count": len(self.rows)}
        if chunk:
            inner["alert"] = chunk
        return httpx.Response(200, json={"listalertsresponse": inner})


@pytest.fixture
def mock():
    with respx.mock(assert_all_called=False) as router:
        yield router


def list_all(client: CloudStackClient, params=None):
    async def go():
        async with client as cs:
            return await cs.list_all_with_info("listAlerts", "alert", params)

    return asyncio.run(go())


def test_an_empty_object_means_no_rows(mock):
    route = mock.get(ENDPOINT, params={"command": "listAlerts"}).respond(
        json=constructed("listAlerts-empty.json")
    )
    rows, info = list_all(make_client())
    assert rows == []
    assert route.call_count == 1
    assert info.consistent and info.count is None


def test_a_page_past_the_end_has_a_count_but_no_list_key(mock):
    first = constructed("listAlerts.json")
    # Page 1 says 8 rows, but 4 were archived before page 2 was served: page 2 is past the
    # end and carries only the new count.
    first["listalertsresponse"]["count"] = 8
    route = mock.get(ENDPOINT, params={"command": "listAlerts"}).mock(
        side_effect=[
            httpx.Response(200, json=first),
            httpx.Response(200, json=constructed("listAlerts-past-end.json")),
        ]
    )
    rows, info = list_all(make_client(), {"pagesize": 4})
    assert len(rows) == 4
    assert route.call_count == 2
    assert not info.consistent  # the count moved: a caller must not trust absence


def test_page_and_pagesize_are_always_sent_together_and_capped_at_500(mock):
    table = Table(3)
    mock.get(ENDPOINT).mock(side_effect=table)
    rows, _ = list_all(make_client(), {"pagesize": 5000, "page": 7})
    assert len(rows) == 3
    assert table.pages == [(1, 500)]


def test_remaining_pages_are_fetched_after_reading_the_count(mock):
    table = Table(1234)
    mock.get(ENDPOINT).mock(side_effect=table)
    rows, info = list_all(make_client())
    assert [r["id"] for r in rows] == [r["id"] for r in table.rows]
    assert sorted(table.pages) == [(1, 500), (2, 500), (3, 500)]
    assert table.pages[0] == (1, 500)
    assert info.pages == 3 and info.consistent


def test_an_exact_multiple_of_the_page_size_costs_no_extra_call(mock):
    table = Table(1000)
    mock.get(ENDPOINT).mock(side_effect=table)
    rows, info = list_all(make_client())
    assert len(rows) == 1000
    assert sorted(p for p, _ in table.pages) == [1, 2]
    assert info.consistent


def test_rows_added_while_paging_are_fetched_and_flagged(mock):
    table = Table(1000)

    def grow(page: int) -> None:
        # Two new alerts arrive (newest first) after page 1 was served.
        if page == 2 and len(table.rows) == 1000:
            table.rows[:0] = [{"id": "new1"}, {"id": "new2"}]

    table.on_request = grow
    mock.get(ENDPOINT).mock(side_effect=table)
    rows, info = list_all(make_client())
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 1000  # shifted rows seen twice are kept once
    assert info.duplicates == 2
    assert info.counts_seen[0] == 1000 and 1002 in info.counts_seen
    assert not info.consistent  # new1/new2 were missed: the caller should not trust it
    assert (3, 500) in table.pages  # kept going past the first count


def test_rows_that_swap_across_pages_are_deduplicated_by_id(mock):
    # listAlerts sorts by last_sent only: equal timestamps may come back in another order.
    pages = {
        1: [{"id": "a"}, {"id": "b"}],
        2: [{"id": "b"}, {"id": "c"}],  # "b" swapped with "d"
        3: [{"id": "e"}],
    }

    def handler(request):
        page = int(request.url.params["page"])
        return httpx.Response(200, json={"listalertsresponse": {"count": 5, "alert": pages[page]}})

    mock.get(ENDPOINT).mock(side_effect=handler)
    rows, info = list_all(make_client(), {"pagesize": 2})
    assert [r["id"] for r in rows] == ["a", "b", "c", "e"]
    assert info.duplicates == 1
    assert not info.consistent


def test_a_shrinking_count_ends_at_the_first_short_page(mock):
    table = Table(1200)

    def shrink(page: int) -> None:
        if page == 2:
            del table.rows[600:]

    table.on_request = shrink
    mock.get(ENDPOINT).mock(side_effect=table)
    rows, info = list_all(make_client(max_concurrency=1))
    assert len(rows) == 600
    assert not info.consistent


class CountingTransport(httpx.AsyncBaseTransport):
    """Serves a Table while counting requests in flight (yields to the loop, never sleeps)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return self.table(request)
        finally:
            self.in_flight -= 1


def test_pages_are_fetched_concurrently_within_the_bound():
    table = Table(5 * 500 + 1)
    transport = CountingTransport(table)
    rows, _ = list_all(make_client(transport, max_concurrency=3))
    assert len(rows) == 2501
    assert transport.max_in_flight == 3  # parallel, but never more than max_concurrency
    assert sorted(p for p, _ in table.pages) == [1, 2, 3, 4, 5, 6]


def test_on_page_is_told_the_rows_of_each_page(mock):
    table = Table(700)
    mock.get(ENDPOINT).mock(side_effect=table)
    seen: list[int] = []

    async def go():
        async with make_client() as cs:
            return await cs.list_all_with_info("listAlerts", "alert", on_page=seen.append)

    asyncio.run(go())
    assert sorted(seen) == [200, 500]


def test_a_lower_server_page_size_limit_is_adopted(mock):
    table = Table(250)
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        if int(request.url.params["pagesize"]) > 100:
            return httpx.Response(
                431,
                json={
                    "listalertsresponse": {
                        "errorcode": 431,
                        "cserrorcode": 4350,
                        "errortext": "Page size can't exceed max allowed page size value: 100",
                    }
                },
            )
        return table(request)

    mock.get(ENDPOINT).mock(side_effect=handler)
    rows, _ = list_all(make_client())
    assert len(rows) == 250
    assert sorted(table.pages) == [(1, 100), (2, 100), (3, 100)]


def test_other_parameter_errors_are_raised(mock):
    mock.get(ENDPOINT).respond(
        431,
        json={"listalertsresponse": {"errorcode": 431, "errortext": "Unable to execute API"}},
    )
    with pytest.raises(ParameterError):
        list_all(make_client())


def test_the_page_iterator_lets_the_caller_stop_early(mock):
    table = Table(1500)
    mock.get(ENDPOINT).mock(side_effect=table)

    async def go():
        got = []
        async with make_client() as cs:
            async for page in cs.iter_pages("listAlerts", "alert", {"pagesize": 100}):
                got.append(page)
                if len(got) == 2:
                    break
        return got

    pages = asyncio.run(go())
    assert [len(p) for p in pages] == [100, 100]
    assert table.pages == [(1, 100), (2, 100)]  # sequential, and nothing fetched beyond


def test_the_page_iterator_ends_on_a_short_page_and_skips_seen_rows(mock):
    pages = {
        1: [{"id": "a"}, {"id": "b"}],
        2: [{"id": "b"}, {"id": "c"}],
        3: [{"id": "d"}],
    }
    route = mock.get(ENDPOINT).mock(
        side_effect=lambda r: httpx.Response(
            200,
            json={"listalertsresponse": {"count": 4, "alert": pages[int(r.url.params["page"])]}},
        )
    )

    async def go():
        async with make_client() as cs:
            return [p async for p in cs.iter_pages("listAlerts", "alert", {"pagesize": 2})]

    got = asyncio.run(go())
    assert [[r["id"] for r in p] for p in got] == [["a", "b"], ["c"], ["d"]]
    assert route.call_count == 3


def test_the_page_iterator_of_an_empty_list_yields_nothing(mock):
    mock.get(ENDPOINT).respond(json=constructed("listAlerts-empty.json"))

    async def go():
        async with make_client() as cs:
            return [p async for p in cs.iter_pages("listAlerts", "alert")]

    assert asyncio.run(go()) == []


class OnePageBreaks(CountingTransport):
    """Page 1 has the count, page 2 is a login page, every other page waits until cancelled."""

    def __init__(self, table: Table) -> None:
        super().__init__(table)
        self.cancelled = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        if page == 1:
            return self.table(request)
        if page == 2:
            await asyncio.sleep(0)  # let the other pages start first
            html = {"content-type": "text/html"}
            return httpx.Response(200, text="<html>login</html>", headers=html)
        self.in_flight += 1
        try:
            await asyncio.Event().wait()
            raise AssertionError("unreachable: nothing sets the event")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


def test_a_page_that_fails_stops_the_other_pages_before_the_listing_raises():
    transport = OnePageBreaks(Table(5 * 500))
    client = make_client(transport, max_concurrency=4)

    async def go() -> int:
        async with client as cs:
            with pytest.raises(NotJsonError):
                await cs.list_all_with_info("listAlerts", "alert")
            return transport.in_flight  # requests still talking to the server now

    assert asyncio.run(go()) == 0
    assert transport.cancelled >= 1  # some pages were in flight, and they were stopped
