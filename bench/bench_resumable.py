#!/usr/bin/env python3
"""Benchmark resumable uploads into woof.py -U beside curl -F, and what a cut costs.

    python3 bench/bench_resumable.py [--size 1G] [--runs 3] [--page]

Times, into a fresh `woof.py -U -c 1` each run (the servers take turns):
  curl -F      one multipart post, the classic upload (the anchor)
  woof.py      `woof.py URL FILE`: a resumable upload, hashed as it is sent
  page         with --page and WOOF_BROWSER_PYTHON (a Python with playwright)
               and Debian's chromium: the upload page, from Send to "Saved"
and woof's peak memory.  Then, through a proxy that breaks the connection
once at 40%, it counts the bytes that were sent twice (what went through the
proxy beyond the file's size) and checks that woof kept what it had:
woof.py run again after the cut, and the page resuming by itself.
Everything runs on 127.0.0.1; every file is deleted afterwards.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import benchlib

sys.path.insert(0, os.path.dirname(benchlib.HERE))
from woof import format_size, parse_size  # noqa: E402  (the size helpers under test)

# The page, driven by Chromium: pick the file, Send, wait for "Saved".
PAGE_SCRIPT = r"""
import re, sys, time
from playwright.sync_api import sync_playwright
url, path = sys.argv[1:3]
flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
    page = browser.new_page()
    page.goto(url)
    page.set_input_files("#files", [path])
    started = time.monotonic()
    page.click("#send")
    page.locator("#status", has_text=re.compile("^(Saved|[0-9]+ files? saved)")).wait_for(
        timeout=600000)
    print(time.monotonic() - started, page.text_content("#status"), flush=True)
    browser.close()
"""


class OneCutProxy:
    """A TCP proxy on 127.0.0.1 that breaks the connection carrying upstream
    byte `cut` once; counts the bytes it sent towards the server."""

    def __init__(self, port, cut):
        self.port_behind, self.cut, self.upstream = port, cut, 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        thread = threading.Thread(target=self.accept_all, daemon=True)
        thread.start()

    def accept_all(self):
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.port_behind))
            except OSError:
                return
            for pair in ((client, server, True), (server, client, False)):
                threading.Thread(target=self.pump, args=pair, daemon=True).start()

    def pump(self, source, target, counted):
        try:
            while True:
                data = source.recv(1 << 20)
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    return
                cut = False
                if counted:
                    with self.lock:
                        if self.cut is not None and self.upstream + len(data) >= self.cut:
                            data, cut, self.cut = data[:self.cut - self.upstream], True, None
                        self.upstream += len(data)
                target.sendall(data)
                if cut:
                    source.close()
                    target.close()
                    return
        except OSError:
            for sock in (source, target):
                sock.close()

    def close(self):
        self.listener.close()


def start_receiver(folder, python):
    return benchlib.start_woof(["-U", folder, "-c", "1"], python=python)


def finish(server):
    code, _, peak = server.finish(timeout=600)
    if code != 0:
        raise RuntimeError("woof -U exited with %d" % code)
    return peak


def client_env(work):
    return dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "cache"))


def upload(kind, path, url, work, python):
    """One upload of path to url; its wall time."""
    if kind == "curl -F":
        return benchlib.run(["curl", "-sS", "-o", os.devnull, "-F", "file=@" + path, url])
    if kind == "woof.py":
        return benchlib.run([python, benchlib.WOOF, "-q", url, path], env=client_env(work),
                            stdout=subprocess.DEVNULL)
    done = subprocess.run([os.environ["WOOF_BROWSER_PYTHON"], "-c", PAGE_SCRIPT, url, path],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True)
    seconds, status = done.stdout.split(" ", 1)
    if not status.startswith("Saved 1 file, each verified"):
        raise RuntimeError("the page said %r" % status)
    return float(seconds)


def check_saved(folder, path):
    saved = os.path.join(folder, os.path.basename(path))
    if subprocess.call(["cmp", "-s", saved, path]) != 0:
        raise RuntimeError("woof saved a different file")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))


def timed(kinds, path, inbox, work, runs, python):
    times = {kind: [] for kind in kinds}
    peaks = {kind: [] for kind in kinds}
    for run in range(runs):
        for kind in kinds if run % 2 == 0 else list(reversed(kinds)):
            os.sync()
            server, url = start_receiver(inbox, python)
            try:
                times[kind].append(upload(kind, path, url, work, python))
                peaks[kind].append(finish(server))
            finally:
                server.stop()
            check_saved(inbox, path)
    return times, peaks


def cut_once(kind, path, inbox, work, python):
    """Bytes sent twice when the connection breaks once at 40%."""
    size = os.path.getsize(path)
    server, url = start_receiver(inbox, python)
    proxy = OneCutProxy(int(url.rsplit(":", 1)[1].strip("/")), int(size * 0.4))
    proxied = "http://127.0.0.1:%d/" % proxy.port
    try:
        if kind == "woof.py":
            argv = [python, benchlib.WOOF, "-q", proxied, path]
            first = subprocess.run(argv, env=client_env(work), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            if first.returncode == 0:
                raise RuntimeError("the cut did not break the send")
            subprocess.run(argv, env=client_env(work), check=True, stdout=subprocess.DEVNULL)
        else:
            upload("page", path, proxied, work, python)
        finish(server)
    finally:
        proxy.close()
        server.stop()
    check_saved(inbox, path)
    return proxy.upstream - size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="upload size (default 1G)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--page", action="store_true", help="also the upload page in Chromium")
    parser.add_argument("--python", default=sys.executable, help="Python that runs woof")
    args = parser.parse_args()
    if not benchlib.have("curl"):
        print("bench_resumable: curl is required", file=sys.stderr)
        return 1
    kinds = ["curl -F", "woof.py"]
    if args.page:
        if not os.environ.get("WOOF_BROWSER_PYTHON") or not os.path.exists("/usr/bin/chromium"):
            print("bench_resumable: --page needs WOOF_BROWSER_PYTHON and /usr/bin/chromium",
                  file=sys.stderr)
            return 1
        kinds.append("page")
    size = parse_size(args.size)
    work = tempfile.mkdtemp(prefix="woof-bench-resumable-")
    try:
        path = benchlib.make_random_file(os.path.join(work, "upload.bin"), size)
        inbox = os.path.join(work, "inbox")
        os.mkdir(inbox)
        times, peaks = timed(kinds, path, inbox, work, args.runs, args.python)
        anchor = benchlib.median(times["curl -F"])
        rows = [(kind, "%.2f s" % benchlib.median(times[kind]), "%.2f s" % min(times[kind]),
                 "%.2fx" % (benchlib.median(times[kind]) / anchor),
                 "%.1f MiB" % max(peaks[kind])) for kind in kinds]
        print("%s upload into woof.py -U, %d runs each, woof under %s"
              % (format_size(size), args.runs, args.python))
        benchlib.report(rows, ("client", "median", "best", "/ curl -F", "woof peak RSS"))
        print()
        for kind in kinds[1:]:
            again = cut_once(kind, path, inbox, work, args.python)
            print("%s, one cut at 40%%: %s sent twice" % (kind, format_size(max(again, 0))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
