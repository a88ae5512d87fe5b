"""The shared input checks: what they accept and what they refuse."""
import math

import numpy as np
import pytest

from llminfra_lab.checks import nonnegative_int, positive_int, positive_number


@pytest.mark.parametrize("ok", [1, 7, np.int64(3)])
def test_positive_int_accepts_integers_from_one(ok):
    positive_int("n", ok)


@pytest.mark.parametrize("bad", [0, -2, 2.0, 2.5, True, "3", None])
def test_positive_int_refuses_with_the_argument_name(bad):
    with pytest.raises(ValueError, match=r"^n must be an int >= 1"):
        positive_int("n", bad)


@pytest.mark.parametrize("ok", [1, 0.5, np.float32(2.0), 1e30])
def test_positive_number_accepts_finite_positive_reals(ok):
    positive_number("rate", ok)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, True, "1", None])
def test_positive_number_refuses_with_the_argument_name(bad):
    with pytest.raises(ValueError, match=r"^rate must be a finite number > 0"):
        positive_number("rate", bad)


@pytest.mark.parametrize("ok", [0, 1, np.int64(0), 10**12])
def test_nonnegative_int_accepts_integers_from_zero(ok):
    nonnegative_int("count", ok)


@pytest.mark.parametrize("bad", [-1, np.int64(-3), 1.0, 0.5, False, "0", None])
def test_nonnegative_int_refuses_with_the_argument_name(bad):
    with pytest.raises(ValueError, match=r"^count must be an int >= 0"):
        nonnegative_int("count", bad)
