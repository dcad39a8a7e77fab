#!/usr/bin/env python3
"""Tests for woof.py: real servers on 127.0.0.1 port 0, real sockets, real clients.

    python3 test_woof.py [-v] [TestClass[.test_name] ...]

Set WOOF_TEST_STRICT=1 to fail, rather than skip, when curl, wget, aria2c or
another client the tests use is missing.
"""

import contextlib
import http.client
import io
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

import woof

HERE = os.path.dirname(os.path.abspath(__file__))
WOOF_PATH = os.path.join(HERE, "woof.py")
STRICT = os.environ.get("WOOF_TEST_STRICT") == "1"
DEADLINE = 30.0


def wait_until(condition, timeout=DEADLINE, message="condition"):
    """Poll condition() until it is true; fail the test at the deadline."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s" % message)
        time.sleep(0.01)


def require_tool(name):
    """The path of a command-line client; skip (or fail when strict) without it."""
    path = shutil.which(name)
    if path is None:
        if STRICT:
            raise AssertionError("%s is required (WOOF_TEST_STRICT=1) but not installed" % name)
        raise unittest.SkipTest("%s is not installed" % name)
    return path


class ServerRun:
    """A WoofServer serving in a thread, as main() would run it."""

    def __init__(self, server):
        self.server = server
        self.error = None
        self.thread = threading.Thread(target=self.run)
        self.thread.daemon = True
        self.thread.start()

    def run(self):
        try:
            self.server.serve_until_done()
        except Exception as error:  # kept for the test to inspect
            self.error = error

    def done(self):
        return not self.thread.is_alive()

    def wait(self, timeout=DEADLINE):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("woof did not finish within %gs" % timeout)

    def stop(self):
        self.server.stop()
        self.thread.join(DEADLINE)
        self.server.server_close()


class WoofTestCase(unittest.TestCase):
    """Each test has its own temporary folder and servers it starts at will."""

    def setUp(self):
        temporary = tempfile.TemporaryDirectory()
        self.addCleanup(temporary.cleanup)
        self.tmp = temporary.name
        self.log_stream = io.StringIO()

    def make_file(self, name, data=b"hello woof\n", folder=None):
        path = os.path.join(folder or self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def settings(self, **overrides):
        values = dict(ip="127.0.0.1", port=0, quiet=False, timeout=10.0)
        values.update(overrides)
        return woof.Settings(**values)

    def start(self, offer, **overrides):
        """Serve offer (a path or an offer object) on 127.0.0.1:0; return the run."""
        if isinstance(offer, str):
            offer = woof.FileOffer(offer)
        log = woof.Log(stream=self.log_stream)
        server = woof.WoofServer(self.settings(**overrides), offer, log)
        run = ServerRun(server)
        self.addCleanup(run.stop)
        return run

    def url(self, run, path=None):
        server = run.server
        return "http://127.0.0.1:%d%s" % (server.port, server.offer_path if path is None else path)

    def connect(self, run):
        connection = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=DEADLINE)
        self.addCleanup(connection.close)
        return connection

    def request(self, run, method="GET", path=None, headers=None, body=None, connection=None):
        """Send one request; return (response, body bytes)."""
        connection = connection or self.connect(run)
        connection.request(method, run.server.offer_path if path is None else path,
                           body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()

    def assert_response(self, response, data, status, headers=None, body=None):
        """Check status, the given headers and the body of one response together."""
        self.assertEqual(response.status, status, data[:200])
        for name, value in (headers or {}).items():
            self.assertEqual(response.getheader(name), value, name)
        if body is not None:
            self.assertEqual(data, body)

    def raw_exchange(self, run, payload, read_timeout=5.0):
        """Send raw bytes and return all the server answers until it closes or pauses."""
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=read_timeout) as raw:
            raw.sendall(payload)
            chunks = []
            try:
                while True:
                    chunk = raw.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except socket.timeout:
                pass
        return b"".join(chunks)

    def log_text(self):
        return self.log_stream.getvalue()


# ---------------------------------------------------------------------------
# Running the suite: the last line is "N passed, N failed".
# ---------------------------------------------------------------------------

def run_suite(argv):
    verbosity = 2 if "-v" in argv else 1
    names = [arg for arg in argv if not arg.startswith("-")]
    loader = unittest.defaultTestLoader
    module = sys.modules[__name__]
    suite = loader.loadTestsFromNames(names, module) if names else loader.loadTestsFromModule(module)
    result = unittest.TextTestRunner(verbosity=verbosity, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped - len(result.expectedFailures)
    sys.stderr.flush()
    line = "%d passed, %d failed" % (passed, failed)
    print(line + (", %d skipped" % skipped if skipped else ""), flush=True)
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(run_suite(sys.argv[1:]))
