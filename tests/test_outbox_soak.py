"""The outbox soak (bench/outbox.py), small: worker processes killed with SIGKILL and restarted,
the host down for a moment, chaos scripted into the server; nothing lost, nothing doubled."""

from __future__ import annotations

import pytest

from bench.outbox import main, run_soak
from bench.outbox_worker import plan_soak

pytestmark = pytest.mark.timeout(180)


def test_a_quick_soak_loses_nothing_and_doubles_nothing() -> None:
    result = run_soak(messages=40, workers=2, kills=2, seed=7, down=1.5)
    tally = result.tally
    assert result.kills >= 1
    assert result.down_at is not None  # the host went down while entries were pending
    assert tally["lost"] == 0, result.problems
    assert tally["duplicates"] == 0, result.problems
    assert tally["ambiguous 2x"] == 0, result.problems  # ambiguous ones are never sent again
    assert tally["once"] + tally["ambiguous"] == tally["deliverable"], result.problems
    assert tally["refused right"] == tally["hard"] > 0, result.problems
    assert tally["hard accepted"] == 0
    assert not result.crashes, result.crashes
    assert result.perfect, result.problems


def test_the_plan_is_drawn_from_the_seed() -> None:
    first, again, other = plan_soak(60, 3), plan_soak(60, 3), plan_soak(60, 4)
    assert first == again
    assert first != other
    ids = [message.message_id for message in first.messages]
    assert len(set(ids)) == len(ids) == 60
    assert all(1 <= len(message.recipients) <= 4 for message in first.messages)


@pytest.mark.parametrize(
    "arguments",
    [["--messages", "0"], ["--workers", "0"], ["--kills", "-1"], ["--messages", "many"]],
)
def test_bad_arguments_are_refused_by_argparse(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
    assert "error" in capsys.readouterr().err
