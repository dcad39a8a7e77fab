#!/usr/bin/env python3
"""Benchmark woof.py -U against a bare socket-to-disk sink, with curl -F and curl -T.

    python3 bench/bench_upload.py [--size 1G] [--runs 5] [--python PYTHON]

The sink is the least any server can do: read the request headers, then copy
the body from the socket to a file with recv_into and write, nothing else.
woof must parse the multipart body, write to a temporary file and rename it.
Reports the median and best wall times of each, their ratios, and woof's peak
memory.  Upload time is curl's wall time; both servers are started beforehand.
The servers' CPU time is mostly the kernel copying into the page cache, which
on a shared VM swings from run to run; user CPU is what the servers' own code
costs.
Everything runs on 127.0.0.1 and every file is deleted afterwards.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import benchlib

sys.path.insert(0, os.path.dirname(benchlib.HERE))
from woof import format_size, parse_size  # noqa: E402  (the size helpers under test)

SINK_BUFFER = 1 << 20


def run_sink(folder):
    """Serve one request: write its body to folder/body, answer 200, exit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print(listener.getsockname()[1], flush=True)
    connection, _ = listener.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += connection.recv(65536)
    head, _, body_start = head.partition(b"\r\n\r\n")
    headers = head.decode("latin-1").lower()
    length = int(headers.split("content-length:")[1].split("\r\n")[0])
    if "expect: 100-continue" in headers:
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    buffer = bytearray(SINK_BUFFER)
    view = memoryview(buffer)
    with open(os.path.join(folder, "body"), "wb", buffering=0) as sink:
        sink.write(body_start)
        left = length - len(body_start)
        while left > 0:
            got = connection.recv_into(view[:min(left, SINK_BUFFER)])
            if not got:
                raise SystemExit("sink: the client went away")
            sink.write(view[:got])
            left -= got
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    connection.close()


def start_sink(folder):
    child = benchlib.Child([sys.executable, os.path.abspath(__file__), "--sink", folder],
                           stdout=subprocess.PIPE, universal_newlines=True)
    port = int(child.process.stdout.readline())
    return child, "http://127.0.0.1:%d/" % port


def curl_args(mode, path):
    return ["-F", "file=@" + path] if mode == "F" else ["-T", path]


def timed_upload(kind, mode, path, folder, python):
    """Upload path once to a fresh server; return (seconds, server's Child, peak MiB)."""
    # Each run starts with no dirty page left by the one before: the kernel
    # would otherwise make the next writer pay for writing them back.
    os.sync()
    if kind == "sink":
        server, url = start_sink(folder)
    else:
        server, url = benchlib.start_woof(["-U", folder, "-c", "1"], python=python)
    try:
        seconds = benchlib.run(["curl", "-sS", "-o", os.devnull] + curl_args(mode, path) + [url])
        code, _, peak = server.finish(timeout=120)
        if code != 0:
            raise RuntimeError("%s exited with %d" % (kind, code))
    finally:
        server.stop()
    return seconds, server, peak


def check_saved(folder, path, kind):
    """woof's copy must be the file itself; then empty the folder."""
    if kind == "woof":
        saved = os.path.join(folder, os.path.basename(path))
        if os.path.getsize(saved) != os.path.getsize(path) or \
                subprocess.call(["cmp", "-s", saved, path]) != 0:
            raise RuntimeError("woof saved a different file")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="upload size (default 1G)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--python", default=sys.executable, help="Python that runs woof")
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return 0
    if not benchlib.have("curl"):
        print("bench_upload: curl is required", file=sys.stderr)
        return 1
    size = parse_size(args.size)
    work = tempfile.mkdtemp(prefix="woof-bench-upload-")
    try:
        path = benchlib.make_random_file(os.path.join(work, "upload.bin"), size)
        inbox = os.path.join(work, "inbox")
        os.mkdir(inbox)
        rows = []
        for mode in ("F", "T"):
            times = {"sink": [], "woof": []}
            cpu = {"sink": [], "woof": []}
            user = {"sink": [], "woof": []}
            peaks = []
            for run in range(args.runs):
                # Alternating who goes first spreads the page cache's moods evenly.
                for kind in ("sink", "woof") if run % 2 == 0 else ("woof", "sink"):
                    seconds, server, peak = timed_upload(kind, mode, path, inbox, args.python)
                    check_saved(inbox, path, kind)
                    times[kind].append(seconds)
                    cpu[kind].append(server.cpu_seconds)
                    user[kind].append(server.user_seconds)
                    if kind == "woof":
                        peaks.append(peak)
            for label, values, pick in (("wall, median", times, benchlib.median),
                                        ("wall, best", times, min),
                                        ("server CPU, median", cpu, benchlib.median),
                                        ("server user CPU, median", user, benchlib.median)):
                sink, woof = pick(values["sink"]), pick(values["woof"])
                rows.append(("curl -%s" % mode, label, "%.2f s" % sink, "%.2f s" % woof,
                             "%.2fx" % (woof / sink), "%.1f MiB" % max(peaks)))
        print("%s upload, %d runs each, woof under %s"
              % (format_size(size), args.runs, args.python))
        benchlib.report(rows, ("client", "time", "sink", "woof -U", "woof/sink",
                               "woof peak RSS"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
