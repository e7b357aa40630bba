"""Starts the crate's demo server (examples/demo.rs) once for these tests.

The binary is the one named by DEMO_BIN (scripts/test.sh builds it and sets it); it is
started on a free port (PORT=0) and its `listening on http://127.0.0.1:PORT` line is read.
A missing DEMO_BIN fails every test loudly: nothing here is ever skipped.
"""

import os
import re
import signal
import subprocess
import threading

import pytest


def demo_bin() -> str:
    path = os.environ.get("DEMO_BIN")
    if not path:
        raise RuntimeError(
            "DEMO_BIN is not set: run these tests through scripts/test.sh, or set DEMO_BIN "
            "to the demo binary built by `cargo build --example demo` "
            "(target/debug/examples/demo)"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"DEMO_BIN={path} is not an executable file")
    return path


@pytest.fixture(scope="session")
def demo_url():
    env = dict(os.environ, PORT="0", HOST="127.0.0.1")
    proc = subprocess.Popen(
        [demo_bin()],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    found = {}
    output = []

    def read_stdout():
        for line in proc.stdout:
            output.append(line)
            m = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
            if m and int(m.group(2)) > 0 and "url" not in found:
                found["url"] = m.group(1)
                ready.set()
        ready.set()  # EOF: the process ended

    ready = threading.Event()
    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    if not ready.wait(timeout=20) or "url" not in found:
        proc.kill()
        proc.wait()
        raise RuntimeError(
            f"demo did not print its listening line (exit {proc.poll()}); output:\n"
            + "".join(output)
        )
    try:
        yield found["url"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("demo did not exit within 5 s of SIGTERM")
        assert code == 0, f"demo exited with {code} on SIGTERM"
