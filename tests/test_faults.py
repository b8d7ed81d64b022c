"""Run directories, the feature cache and the command lines under faults and bad input: every case of
tests/probe_faults.py (real processes, real files; `python tests/probe_faults.py` prints one line per case)."""

import pytest

from probe_faults import CASES


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name, tmp_path):
    CASES[name](tmp_path)
