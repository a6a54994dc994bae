"""The clock-skew probe against a model of ``verifyRequest``: brackets, calls, 4.21's limit."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import pytest

from sidecar.cloudstack.skew import (
    MAX_CALLS,
    MAX_EXPIRES_AHEAD,
    PRECISION,
    SkewBracket,
    bracket_skew,
)

LIFETIME = 600.0
#: Our clock at the start: not on a whole second, so that ``expires`` rounding shows.
START = 1_700_000_000.37
#: One way of a call, in seconds: the server checks half-way, our clock runs on meanwhile.
LATENCY = 0.02


class Server:
    """Accepts a signed call while its ``expires`` is not past by the server's clock (our
    clock + ``skew``) and, with ``enforce`` (4.21+), at most 15 minutes ahead of it."""

    def __init__(self, skew: float, *, enforce: bool = False, key_works: bool = True) -> None:
        self.skew = skew
        self.enforce = enforce
        self.key_works = key_works
        self.ours = START
        #: ``expires`` minus the server's clock of every probe.
        self.ahead: list[float] = []

    def now(self) -> float:
        return self.ours

    def accepts(self, expires: float) -> bool:
        ahead = expires - (self.ours + self.skew)
        return self.key_works and ahead >= 0 and not (self.enforce and ahead > MAX_EXPIRES_AHEAD)

    def ordinary(self) -> bool:
        """A call signed ``LIFETIME`` s ahead, as the client signs them."""
        return self.accepts(self.ours + LIFETIME)

    async def send(self, expires: datetime) -> bool:
        self.ours += LATENCY
        self.ahead.append(expires.timestamp() - (self.ours + self.skew))
        accepted = self.accepts(expires.timestamp())
        self.ours += LATENCY
        return accepted


def measure(server: Server, *, guess: float | None = None,
            ordinary: bool | None = None) -> SkewBracket:
    accepted = server.ordinary() if ordinary is None else ordinary
    return asyncio.run(bracket_skew(server.send, now=server.now, lifetime=LIFETIME,
                                    ordinary_accepted=accepted, guess=guess))


SKEWS = [-1150.0, -1000.0, -905.0, -300.0, -12.4, -3.0, -0.4, 0.0, 0.6, 3.0, 12.0, 299.5,
         300.0, 599.0, 600.5, 905.0, 1500.0, 2300.0]


@pytest.mark.parametrize("enforce", [False, True], ids=["4.19", "4.21-enforced"])
@pytest.mark.parametrize("skew", SKEWS)
def test_the_skew_is_bracketed_to_two_seconds_either_way_within_the_call_budget(
    skew: float, enforce: bool
) -> None:
    server = Server(skew, enforce=enforce)
    ordinary = server.ordinary()
    bracket = measure(server, ordinary=ordinary)
    # After a refusal, asking again as signed was refused too: the clock is the cause.
    assert bracket.lifetime_refused is (None if ordinary else True)
    assert bracket.key_works and bracket.exact
    assert bracket.low is not None and bracket.high is not None
    slack = 2 * LATENCY  # the server checked somewhere within the call
    assert bracket.low - slack < skew <= bracket.high + slack
    assert bracket.high - bracket.low <= PRECISION + 2 * slack
    assert abs((bracket.seconds or 0.0) - skew) <= PRECISION / 2 + slack
    assert bracket.calls == len(server.ahead) <= MAX_CALLS


@pytest.mark.parametrize("skew", [-299.0, -120.0, 0.0, 300.0, 905.0, 2300.0])
def test_no_probe_asks_more_than_15_minutes_ahead_of_the_servers_clock(skew: float) -> None:
    # Unless the ordinary call itself was further ahead (the server more than 300 s behind):
    # the probe cannot know that yet; a refusal up there then shows the limit is on.
    server = Server(skew, enforce=True)
    measure(server)
    assert max(server.ahead) <= MAX_EXPIRES_AHEAD


def test_agreeing_clocks_take_two_calls() -> None:
    server = Server(0.3)
    bracket = measure(server)
    assert bracket.calls == 2 and bracket.exact
    assert bracket.low is not None and bracket.low < 0.3 <= (bracket.high or 0.0)


def test_a_right_date_header_guess_takes_two_calls_even_minutes_off() -> None:
    server = Server(-437.2)
    bracket = measure(server, guess=-437.0)
    assert bracket.calls == 2 and abs((bracket.seconds or 0.0) + 437.2) <= 1.1


@pytest.mark.parametrize("skew", [-7.0, -3.0, 3.0, 7.0])
def test_a_few_seconds_off_take_at_most_six_calls(skew: float) -> None:
    assert measure(Server(skew)).calls <= 6


def test_a_key_that_does_not_work_costs_four_calls_and_proves_nothing() -> None:
    server = Server(0.0, key_works=False)
    bracket = measure(server)
    assert not bracket.key_works and bracket.seconds is None
    assert bracket.calls == 4  # asked again as it was, then 2 windows ahead and 1 behind
    assert bracket.searched == (LIFETIME - 890 - 900, LIFETIME + 2 * 890)


def test_a_refusal_with_another_cause_does_not_misplace_the_bracket() -> None:
    # The ordinary call was refused (a key rotated and back, a fault), yet the clocks agree.
    bracket = measure(Server(1.5), ordinary=False)
    assert bracket.lifetime_refused is False
    assert bracket.key_works and bracket.exact
    assert abs((bracket.seconds or 0.0) - 1.5) <= 1.1


def test_a_server_far_behind_without_4_21s_limit_is_reported_as_at_least() -> None:
    server = Server(-5000.0)
    bracket = measure(server)
    assert bracket.key_works and not bracket.exact and bracket.low is None
    floor = LIFETIME - 890 - 900
    assert bracket.high is not None and floor <= bracket.high <= floor + PRECISION
    assert bracket.seconds == bracket.high
    assert bracket.calls <= MAX_CALLS


def test_a_server_far_ahead_is_out_of_reach_and_never_probed_past_the_limit() -> None:
    server = Server(7200.0, enforce=True)
    bracket = measure(server)
    assert not bracket.key_works and bracket.calls == 4
    assert max(server.ahead) < 0  # every probe expired: none was too far ahead


@pytest.mark.parametrize("seed", range(20))
def test_answers_that_contradict_each_other_stay_within_the_budget(seed: int) -> None:
    rng = random.Random(seed)

    async def coin(expires: datetime) -> bool:
        return rng.random() < 0.5

    bracket = asyncio.run(bracket_skew(coin, now=lambda: START, lifetime=LIFETIME,
                                       ordinary_accepted=rng.random() < 0.5))
    assert bracket.calls <= MAX_CALLS
    if not bracket.consistent:
        assert bracket.seconds is None and not bracket.exact
