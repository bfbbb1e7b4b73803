"""When and how long to wait before retrying a provider request."""

from __future__ import annotations

import pytest

from chatbot_app.services.retry import RetryPolicy


@pytest.mark.parametrize(("failed_attempt", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 8.0)])
def test_backoff_doubles_up_to_a_cap_with_jitter_in_its_upper_half(failed_attempt: int, ceiling: float) -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=8.0)
    delays = {policy.delay(failed_attempt, None) for _ in range(200)}

    assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # jittered, so clients that failed together do not retry together


def test_retry_after_is_honoured_exactly() -> None:
    assert RetryPolicy().delay(1, 3.5) == 3.5


def test_a_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    assert RetryPolicy(max_retry_after_s=20).delay(1, 60) is None
