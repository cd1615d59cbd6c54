"""The restart decision of `pitstop up`'s Temporal supervision: backoff, reset after a healthy run, giving up."""

from __future__ import annotations

from pitstop.workers.supervision import RestartPolicy, describe_exit, next_restart

POLICY = RestartPolicy(first_delay_seconds=1.0, max_delay_seconds=10.0, healthy_after_seconds=60.0,
                       max_consecutive_restarts=5)


def test_a_server_that_ran_a_while_is_restarted_after_the_first_delay() -> None:
    decision = next_restart(POLICY, uptime_seconds=3600.0, consecutive_before=4)
    assert decision.consecutive == 1 and decision.delay_seconds == 1.0 and not decision.give_up


def test_quick_failures_back_off_exponentially_up_to_the_cap() -> None:
    delays, consecutive = [], 0
    for _ in range(5):
        decision = next_restart(POLICY, uptime_seconds=2.0, consecutive_before=consecutive)
        assert not decision.give_up
        delays.append(decision.delay_seconds)
        consecutive = decision.consecutive
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0]


def test_gives_up_after_too_many_quick_failures_in_a_row() -> None:
    decision = next_restart(POLICY, uptime_seconds=0.0, consecutive_before=5)
    assert decision.give_up and decision.consecutive == 6


def test_the_count_restarts_once_the_server_stayed_up_long_enough() -> None:
    assert next_restart(POLICY, uptime_seconds=59.9, consecutive_before=3).consecutive == 4
    assert next_restart(POLICY, uptime_seconds=60.0, consecutive_before=3).consecutive == 1


def test_exit_codes_are_described_for_a_human() -> None:
    assert describe_exit(1) == "code 1"
    assert describe_exit(-9) == "code -9 (SIGKILL)"
    assert describe_exit(-15) == "code -15 (SIGTERM)"
    assert describe_exit(-200) == "code -200"
