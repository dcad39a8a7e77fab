#!/usr/bin/env python3
"""HTTPS download benchmark: woof.py beside nginx with the same kind of certificate.

Makes a P-256 (ECDSA) key and self-signed certificate with openssl, the kind
woof's --https makes for itself, and offers one file of random bytes (1 GiB
by default) from woof.py (--cert/--key with that certificate, and --https
with its own throwaway one) and from nginx (master and workers, ssl on,
TLS 1.3), fetched with `curl -k` into /dev/null.  Every measurement is
repeated and the median kept; the servers take turns within each repeat.

    python3 bench/bench_https.py              # 1 GiB, 3 repeats
    python3 bench/bench_https.py --quick      # 256 MiB, 1 repeat

Linux only; needs curl, openssl and nginx (Debian: curl openssl nginx-light).
Standard library only; stops by itself; talks to 127.0.0.1 only.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib

HOST = "127.0.0.1"
FILE_NAME = "offer.bin"
CURL_MAX_SECONDS = 600
WOOF_EXIT_SECONDS = 30
MAX_RATIO_TO_NGINX = 1.5  # the project's target for HTTPS

def make_certificate(folder):
    """A P-256 key and a self-signed certificate for 127.0.0.1, made by openssl."""
    certificate = os.path.join(folder, "certificate.pem")
    key = os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=bench", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", certificate],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return certificate, key


class Woof:
    """woof.py started afresh for each download with -c 1, so it exits by itself."""

    def __init__(self, name, path, python, options):
        self.name = name
        self.path = path
        self.python = python
        self.options = options
        self.child = None
        self.peaks = []

    def before(self):
        self.child, url = benchlib.start_woof(["-c", "1"] + self.options + [self.path],
                                              python=self.python)
        return url

    def after(self):
        code, _, peak = self.child.finish(timeout=WOOF_EXIT_SECONDS)
        self.child = None
        if code != 0:
            raise RuntimeError("%s exited with status %s" % (self.name, code))
        self.peaks.append(peak)

    def peak(self):
        return max(self.peaks) if self.peaks else None

    def close(self):
        if self.child is not None:
            self.child.stop()


class Nginx:
    """nginx serving HTTPS for the whole benchmark."""

    name = "nginx"

    def __init__(self, folder, path, certificate, key):
        port = benchlib.free_port(HOST)
        self.url = "https://%s:%d/%s" % (HOST, port, os.path.basename(path))
        self.child = benchlib.Child(benchlib.nginx_argv(folder, HOST, port,
                                                        os.path.dirname(path), certificate, key),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        self.final_peak = None
        benchlib.wait_listening(self.child, HOST, port)

    def before(self):
        return self.url

    def after(self):
        if self.child.process.poll() is not None:
            raise RuntimeError("nginx stopped during the benchmark")

    def peak(self):
        return self.final_peak

    def close(self):
        finished = self.child.stop()
        if finished is not None:
            self.final_peak = finished[2]


def download(url, size):
    """Fetch url with curl -k into /dev/null; return the wall time."""
    argv = ["curl", "--silent", "--show-error", "--fail", "--insecure", "--noproxy", "*",
            "--max-time", str(CURL_MAX_SECONDS), "--output", os.devnull,
            "--write-out", "%{size_download}", url]
    started = time.monotonic()
    result = subprocess.run(argv, stdout=subprocess.PIPE, universal_newlines=True)
    seconds = time.monotonic() - started
    if result.returncode != 0 or result.stdout.strip() != str(size):
        raise RuntimeError("curl %s: status %d, %s of %d bytes"
                           % (url, result.returncode, result.stdout.strip() or "no", size))
    return seconds


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=benchlib.parse_size,
                        help="size of the offered file (default 1G; --quick 256M)")
    parser.add_argument("--repeat", type=int,
                        help="measurements per server, the median is kept (default 3; "
                             "--quick 1)")
    parser.add_argument("--quick", action="store_true", help="a fast check: 256M, 1 repeat")
    parser.add_argument("--python", default=sys.executable, help="interpreter for woof.py")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    size = args.size or (256 << 20 if args.quick else 1 << 30)
    repeat = args.repeat or (1 if args.quick else 3)
    for tool in ("curl", "openssl", "nginx"):
        if not benchlib.have(tool):
            print("bench_https: %s is needed" % tool, file=sys.stderr)
            return 1
    folder = tempfile.mkdtemp(prefix="woof-bench-", dir="/tmp")
    servers = []
    times = {}
    try:
        files = os.path.join(folder, "files")
        os.mkdir(files)
        path = benchlib.make_random_file(os.path.join(files, FILE_NAME), size)
        certificate, key = make_certificate(folder)
        servers = [Woof("woof --cert", path, args.python, ["--cert", certificate, "--key", key]),
                   Woof("woof --https", path, args.python, ["--https"]),
                   Nginx(folder, path, certificate, key)]
        for round_number in range(repeat):
            turn = servers[round_number % 3:] + servers[:round_number % 3]
            for server in turn:
                url = server.before()
                seconds = download(url, size)
                server.after()
                times.setdefault(server.name, []).append(seconds)
                print("  round %d/%d  %-13s %.3f s" % (round_number + 1, repeat, server.name,
                                                      seconds), file=sys.stderr, flush=True)
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(folder, ignore_errors=True)
    medians = {name: benchlib.median(values) for name, values in times.items()}
    print("HTTPS download of %g MiB with curl -k to /dev/null, median of %d, %d CPU(s)"
          % (size / (1 << 20), repeat, os.cpu_count()))
    rows = []
    for server in servers:
        seconds = medians[server.name]
        rows.append((server.name, "%.3f" % seconds, "%.3f" % min(times[server.name]),
                     "%.0f" % (size / seconds / (1 << 20)),
                     "%.2f" % (seconds / medians["nginx"]),
                     "-" if server.peak() is None else "%.1f" % server.peak()))
    benchlib.report(rows, ("server", "median s", "best s", "MiB/s", "this/nginx", "peak MiB"))
    ratio = medians["woof --cert"] / medians["nginx"]
    print("%s  woof/nginx over HTTPS = %.2f (target <= %.2f)"
          % ("ok  " if ratio <= MAX_RATIO_TO_NGINX else "MISS", ratio, MAX_RATIO_TO_NGINX))
    return 0


if __name__ == "__main__":
    sys.exit(main())
