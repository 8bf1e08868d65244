import signal

import pytest
import torch

from tests.helpers import SharedRuns

# Small networks run fastest on one thread, and a second thread stalls when the other core is busy.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def keep_ctrl_c():
    """A script run in this process installs its own Ctrl-C handler; put pytest's back after each test."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """shared_run(script, *flags) -> the run folder of `python <script> <flags>`, trained once per test module."""
    return SharedRuns(tmp_path_factory)
