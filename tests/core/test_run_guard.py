"""The run guard ends a killed driver's descendants, and only those."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedlab.run_guard import descendants, start_guard, start_time

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

# A driver that starts a grandchild in a new session (as Ray's agents are) and then waits.
DRIVER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
print("ready", flush=True)
time.sleep(120)
"""


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_sigkilled_driver_leaves_no_descendant_and_an_outsider_is_untouched():
    outsider = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "ready"
        guard = start_guard(driver.pid)
        assert guard is not None
        assert wait_until(lambda: len(descendants(driver.pid)) >= 1, 5)
        grandchildren = descendants(driver.pid)
        time.sleep(1.5)  # at least one look by the guard
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert wait_until(lambda: all(start_time(p) is None for p in grandchildren), 10), (
            "the killed driver's descendants are still running"
        )
        assert guard.wait(timeout=10) == 0
        assert outsider.poll() is None, "the guard ended a process that was not the driver's"
    finally:
        for proc in (outsider, driver):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_the_guard_of_a_driver_that_is_already_gone_exits_at_once():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    guard = start_guard(gone.pid)
    assert guard is not None
    assert guard.wait(timeout=10) == 0
