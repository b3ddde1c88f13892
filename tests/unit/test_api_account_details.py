"""getAccountDetails from a platform account: what is known, and nothing invented."""

from __future__ import annotations

from exchange.api import convert
from exchange.storage.platform import Account


def account(jurisdiction: str, currency: str = "USD") -> Account:
    return Account(account_id="a1", username="alice", role="BETTOR", jurisdiction=jurisdiction,
                   currency=currency, requests_per_second=None, burst=None)


def test_a_state_jurisdiction_gives_its_country():
    details = convert.account_details(account("us-nj"))
    assert (details.currency_code, details.region, details.country_code) == ("USD", "us-nj", "US")
    assert convert.account_details(account("ca-on", "CAD")).country_code == "CA"


def test_a_jurisdiction_that_is_not_one_country_has_no_country_code():
    details = convert.account_details(account("intl", "GBP"))
    assert details.country_code is None and details.region == "intl" and details.currency_code == "GBP"
