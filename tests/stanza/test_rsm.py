"""XEP-0059 Result Set Management: reading requests, describing pages, and refusing malformed sets."""

from __future__ import annotations

import pytest

from tests.server.harness import canonical, xml
from xmppcore.stanza.rsm import (
    NS_RSM,
    RsmError,
    RsmPage,
    RsmRequest,
    find_request,
    parse_page,
    parse_request,
)
from xmppcore.xml.element import Element


def rsm(inner: str) -> Element:
    return xml(f"<set xmlns='{NS_RSM}'>{inner}</set>")


@pytest.mark.parametrize(("inner", "asked"), [
    ("", RsmRequest()),
    ("<max>10</max>", RsmRequest(max=10)),                                   # §2.1
    ("<max> 0 </max>", RsmRequest(max=0)),                                   # §2.7: the count only
    ("<max>10</max><after>peterpan@neverland.lit</after>", RsmRequest(max=10, after="peterpan@neverland.lit")),
    ("<max>10</max><before>peter@pixyland.org</before>", RsmRequest(max=10, before="peter@pixyland.org")),
    ("<max>10</max><before/>", RsmRequest(max=10, before="")),               # §2.5: the last page
    ("<before>\n  </before>", RsmRequest(before="")),
    ("<max>10</max><index>371</index>", RsmRequest(max=10, index=371)),      # §2.6
    ("<after>a</after><before>b</before>", RsmRequest(after="a", before="b")),
    ("<max>2147483647</max>", RsmRequest(max=2**31 - 1)),
])
def test_requests_are_read(inner: str, asked: RsmRequest) -> None:
    assert parse_request(rsm(inner)) == asked


@pytest.mark.parametrize("inner", [
    "<max>-1</max>", "<max>ten</max>", "<max>+5</max>", "<max>1_000</max>", "<max>\u0663</max>",
    "<max></max>", "<max>2147483648</max>", "<max>99999999999999999999</max>",
    "<index>-3</index>", "<max>1</max><max>2</max>", "<after/>", "<after>a</after><after>b</after>",
    "<index>3</index><after>x</after>", "<index>3</index><before/>",
])
def test_malformed_requests_are_refused(inner: str) -> None:
    with pytest.raises(RsmError):
        parse_request(rsm(inner))


def test_only_an_rsm_set_is_read() -> None:
    with pytest.raises(RsmError):
        parse_request(xml("<set xmlns='urn:example'/>"))


def test_find_request_looks_for_the_set_child() -> None:
    query = xml(f"<query xmlns='urn:xmpp:mam:2'><set xmlns='{NS_RSM}'><max>5</max></set></query>")
    assert find_request(query) == RsmRequest(max=5)
    assert find_request(xml("<query xmlns='urn:xmpp:mam:2'/>")) is None


@pytest.mark.parametrize("asked", [
    RsmRequest(), RsmRequest(max=0), RsmRequest(max=10, after="x"), RsmRequest(max=3, before=""),
    RsmRequest(before="y"), RsmRequest(index=7, max=2),
])
def test_a_request_survives_its_own_element(asked: RsmRequest) -> None:
    assert parse_request(asked.element()) == asked


def test_an_empty_before_is_written_empty() -> None:
    assert canonical(RsmRequest(max=10, before="").element()) == canonical(rsm("<max>10</max><before/>"))


def test_a_page_is_described_with_first_last_and_count() -> None:
    page = RsmPage(first="stpeter@jabber.org", first_index=0, last="peterpan@neverland.lit", count=800)
    assert canonical(page.element()) == canonical(rsm(
        "<first index='0'>stpeter@jabber.org</first><last>peterpan@neverland.lit</last><count>800</count>"))


def test_exact_counts_say_so() -> None:
    # XEP-0059 1.1: 'exact' on <count/> and 'exact-index' on <first/> are RECOMMENDED when known.
    page = RsmPage(first="a", first_index=10, last="b", count=20, exact=True)
    assert canonical(page.element()) == canonical(rsm(
        "<first index='10' exact-index='true'>a</first><last>b</last><count exact='true'>20</count>"))


def test_an_empty_page_has_no_first_or_last() -> None:
    # §2.2: "If there are no items in the page, then the <first/> and <last/> elements MUST NOT be included."
    assert canonical(RsmPage(count=790).element()) == canonical(rsm("<count>790</count>"))
    with pytest.raises(RsmError):
        RsmPage(first="a")
    with pytest.raises(RsmError):
        RsmPage(first_index=3)


@pytest.mark.parametrize("page", [
    RsmPage(), RsmPage(count=0, exact=True), RsmPage(first="a", last="a"),
    RsmPage(first="a", first_index=4, last="z", count=9, exact=True),
])
def test_a_page_survives_its_own_element(page: RsmPage) -> None:
    assert parse_page(page.element()) == page


def test_a_page_with_a_bad_count_is_refused() -> None:
    with pytest.raises(RsmError):
        parse_page(rsm("<count>many</count>"))
