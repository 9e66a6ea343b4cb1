"""Tests of helpers/support/checks.py."""

from helpers.support.checks import Verdict, check_function, check_number


def test_check_number_passes_within_tolerance(capsys):
    assert check_number("Ex", 101.0, 100.0, rtol=0.02)
    assert "✅ Ex: correct." in capsys.readouterr().out


def test_check_number_explains_a_wrong_answer(capsys):
    verdict = check_number("Ex", 150.0, 100.0, hint="Divide by the latency in seconds.")
    assert isinstance(verdict, Verdict) and not verdict
    out = capsys.readouterr().out
    assert "❌" in out and "too high" in out and "Divide by the latency" in out
    assert "50%" not in out and "factor" not in out  # how far off would give the answer away
    check_number("Ex", 10.0, 100.0)
    assert "too low, by more than a factor of 2" in capsys.readouterr().out


def test_check_number_handles_unanswered_and_non_numbers(capsys):
    assert not check_number("Ex", ..., 1.0)
    assert "not answered yet" in capsys.readouterr().out
    assert not check_number("Ex", "12", 12.0)
    assert "expected a number, got str" in capsys.readouterr().out


def test_check_function_reports_the_first_failing_case(capsys):
    cases = [((2,), 4.0), ((3,), 9.0)]
    assert check_function("Sq", lambda x: x * x, cases)
    assert "correct on all 2 cases" in capsys.readouterr().out
    assert not check_function("Sq", lambda x: 2 * x, cases)
    assert "for (3) expected 9, got 6" in capsys.readouterr().out


def test_check_function_recognises_an_unimplemented_stub(capsys):
    def stub(x):
        ...

    assert not check_function("Sq", stub, [((2,), 4.0)])
    assert "not implemented yet: stub(2) returned None" in capsys.readouterr().out


def test_check_choice_lists_the_allowed_answers(capsys):
    from helpers.support.checks import check_choice

    assert check_choice("E", "memory", "memory", ("memory", "compute"))
    assert not check_choice("E", "disk", "memory", ("memory", "compute"))
    assert "answer one of 'memory', 'compute'" in capsys.readouterr().out
    assert not check_choice("E", ..., "memory", ("memory", "compute"))
