#!/usr/bin/env python3
"""Download benchmark: woof.py beside `python -m http.server` and nginx.

Offers one file of random bytes (1 GiB by default) from each server on
127.0.0.1 and fetches it with curl into /dev/null, with one client and with
four at once.  Every measurement is repeated and the median kept; the servers
take turns within each repeat, so noise on the machine hits them all alike.
Also measures woof's start-up time and its peak memory while idle.

    python3 bench/bench_download.py              # 1 GiB, 3 repeats
    python3 bench/bench_download.py --quick      # 256 MiB, 1 repeat
    python3 bench/bench_download.py --clients 100 --unlimited --size 32M \
        --baseline /tmp/woof-before.py           # a class at once, beside an older woof

Linux only (peak memory comes from os.wait4); needs curl; uses nginx when it
is on PATH.  Standard library only; stops by itself; talks to 127.0.0.1 only.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchlib

HOST = "127.0.0.1"
FILE_NAME = "offer.bin"
CURL_MAX_SECONDS = 600
WOOF_EXIT_SECONDS = 30
STARTUP_SAMPLES = 7

# What the benchmark checks woof against (the project's stated targets).
MAX_RATIO_TO_NGINX = 1.10
MAX_RATIO_TO_HTTP_SERVER = 1.0
MAX_PEAK_MIB = 40.0


class Woof:
    """woof.py, started afresh for each measurement with -c CLIENTS so it exits by
    itself; or, unlimited, with -c 0 as a class would run it, and stopped with
    SIGINT once the clients are done."""

    def __init__(self, path, python, name="woof.py", script=benchlib.WOOF, unlimited=False,
                 terminal=False):
        self.path = path
        self.python = python
        self.name = name
        self.script = script
        self.unlimited = unlimited
        self.terminal = terminal
        self.child = None
        self.clients = None
        self.peaks = {}
        self.cpu = {}
        self.idle_cpu = 0.0

    def before(self, clients):
        self.clients = clients
        count = 0 if self.unlimited else clients
        self.child, url = benchlib.start_woof(["-c", str(count), self.path],
                                              python=self.python, script=self.script,
                                              terminal=self.terminal)
        return url

    def after(self):
        if self.unlimited:
            self.child.process.send_signal(signal.SIGINT)
        code, _, peak = self.child.finish(timeout=WOOF_EXIT_SECONDS)
        cpu_seconds, self.child = self.child.cpu_seconds, None
        if code != (130 if self.unlimited else 0):
            raise RuntimeError("woof.py exited with status %s after the downloads" % code)
        self.peaks.setdefault(self.clients, []).append(peak)
        self.cpu.setdefault(self.clients, []).append(cpu_seconds)

    def peak(self, clients=None):
        """The largest peak RSS in MiB, over the runs with `clients` or over all runs."""
        chosen = [p for c, ps in self.peaks.items() if clients in (None, c) for p in ps]
        return max(chosen) if chosen else None

    def cpu_per_gib(self, clients, size):
        """Median CPU seconds woof spent per GiB sent, beyond what an idle run costs."""
        sending = benchlib.median(self.cpu[clients]) - self.idle_cpu
        return max(0.0, sending) / (size * clients / (1 << 30))

    def close(self):
        if self.child is not None:
            self.child.stop()


class LongRunning:
    """A server that runs for the whole benchmark; its peak memory is known at the end."""

    def __init__(self, name, argv, port, path):
        self.name = name
        self.url = "http://%s:%d/%s" % (HOST, port, os.path.basename(path))
        self.child = benchlib.Child(argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.final_peak = None
        self.downloads = 0
        benchlib.wait_listening(self.child, HOST, port)

    def before(self, clients):
        self.downloads += clients
        return self.url

    def after(self):
        if self.child.process.poll() is not None:
            raise RuntimeError("%s stopped during the benchmark" % self.name)

    def peak(self, clients=None):
        """Peak RSS in MiB over the whole benchmark (known once closed)."""
        return self.final_peak

    def cpu_per_gib(self, clients, size):
        """CPU seconds per GiB sent, over the whole benchmark (known once closed)."""
        if self.child.cpu_seconds is None or not self.downloads:
            return None
        return self.child.cpu_seconds / (size * self.downloads / (1 << 30))

    def close(self):
        finished = self.child.stop()
        if finished is not None:
            self.final_peak = finished[2]


def start_http_server(folder, path, python):
    port = benchlib.free_port(HOST)
    argv = [python, "-m", "http.server", "--bind", HOST, str(port), "--directory", folder]
    return LongRunning("http.server", argv, port, path)


def start_nginx(folder, path):
    """nginx with the usual master and workers, everything it writes kept in `folder`."""
    port = benchlib.free_port(HOST)
    argv = benchlib.nginx_argv(folder, HOST, port, os.path.dirname(path))
    return LongRunning("nginx", argv, port, path)


def download(url, clients, size):
    """Fetch url with `clients` curls at once into /dev/null; return the wall time."""
    argv = ["curl", "--silent", "--show-error", "--fail", "--noproxy", "*",
            "--max-time", str(CURL_MAX_SECONDS), "--output", os.devnull,
            "--write-out", "%{size_download}", url]
    started = time.monotonic()
    curls = [subprocess.Popen(argv, stdout=subprocess.PIPE, universal_newlines=True)
             for _ in range(clients)]
    received = [curl.communicate()[0] for curl in curls]
    seconds = time.monotonic() - started
    for curl, got in zip(curls, received):
        if curl.returncode != 0 or got.strip() != str(size):
            raise RuntimeError("curl %s: status %d, %s of %d bytes"
                               % (url, curl.returncode, got.strip() or "no", size))
    return seconds


def measure(servers, clients_list, repeat, size, progress):
    """Median seconds for each (server name, clients), servers interleaved."""
    times = {}
    for round_number in range(repeat):
        # Rotate who goes first, so no server always follows the same neighbour.
        turn = servers[round_number % len(servers):] + servers[:round_number % len(servers)]
        for clients in clients_list:
            for server in turn:
                url = server.before(clients)
                seconds = download(url, clients, size)
                server.after()
                times.setdefault((server.name, clients), []).append(seconds)
                progress("round %d/%d  %-11s %d client(s)  %.3f s"
                         % (round_number + 1, repeat, server.name, clients, seconds))
    return {key: benchlib.median(values) for key, values in times.items()}, times


def measure_woof_idle(path, python, samples, terminal=False, script=benchlib.WOOF):
    """Median seconds from start to printed URL, largest idle peak RSS in MiB,
    median CPU, largest resident size in MiB once the URL is printed."""
    startups, peaks, cpu, resident = [], [], [], []
    benchlib.started_once(python, script)  # its bytecode cache written, not timed
    for _ in range(samples):
        started = time.monotonic()
        child, _ = benchlib.start_woof([path], python=python, terminal=terminal, script=script)
        startups.append(time.monotonic() - started)
        resident.append(benchlib.resident_mib(child.process.pid))
        child.process.send_signal(signal.SIGINT)
        _, _, peak = child.finish(timeout=WOOF_EXIT_SECONDS)
        peaks.append(peak)
        cpu.append(child.cpu_seconds)
    return benchlib.median(startups), max(peaks), benchlib.median(cpu), max(resident)


def table_rows(servers, clients_list, medians, runs, size):
    rows = []
    for clients in clients_list:
        woof_seconds = medians[("woof.py", clients)]
        for server in servers:
            seconds = medians[(server.name, clients)]
            spread = max(runs[(server.name, clients)]) - min(runs[(server.name, clients)])
            peak = server.peak(clients)
            cpu = server.cpu_per_gib(clients, size)
            rows.append((server.name, clients, "%.3f" % seconds,
                         "%.3f" % min(runs[(server.name, clients)]),
                         "%.0f" % (size * clients / seconds / (1 << 20)),
                         "%.2f" % (woof_seconds / seconds),
                         "%.0f%%" % (100 * spread / seconds),
                         "-" if cpu is None else "%.2f" % cpu,
                         "-" if peak is None else "%.1f" % peak))
    return rows


def verdicts(medians, clients_list, woof_peak, woofs=("woof.py",)):
    """Lines saying whether woof (and the baseline, if any) met each target."""
    lines = []
    for woof in woofs:
        for other, limit in (("http.server", MAX_RATIO_TO_HTTP_SERVER),
                             ("nginx", MAX_RATIO_TO_NGINX)):
            for clients in clients_list:
                if (other, clients) not in medians:
                    continue
                ratio = medians[(woof, clients)] / medians[(other, clients)]
                lines.append("%s  %s/%s at %d client(s) = %.3f (target <= %.2f)"
                             % ("ok  " if ratio <= limit else "MISS", woof, other, clients,
                                ratio, limit))
    lines.append("%s  woof peak RSS %.1f MiB (target < %.0f MiB)"
                 % ("ok  " if woof_peak < MAX_PEAK_MIB else "MISS", woof_peak, MAX_PEAK_MIB))
    return lines


def python_version(python):
    return subprocess.run([python, "--version"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True).stdout.strip()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=benchlib.parse_size,
                        help="size of the offered file (default 1G; --quick 256M)")
    parser.add_argument("--repeat", type=int,
                        help="measurements per case, the median is kept (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="a fast check: 256M, 1 repeat")
    parser.add_argument("--clients", default="1,4",
                        help="numbers of parallel clients, comma-separated (default 1,4)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for woof.py (default: this one, which also "
                             "runs http.server)")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    parser.add_argument("--unlimited", action="store_true",
                        help="run woof with -c 0, as for a class, stopping it after each "
                             "measurement (default: -c CLIENTS, so it exits by itself)")
    parser.add_argument("--baseline", metavar="WOOF_PY",
                        help="another woof.py (say, before a change) measured in the same "
                             "run, as 'baseline'")
    parser.add_argument("--terminal", action="store_true",
                        help="run woof with a pseudo-terminal as stderr and without -q, so "
                             "that it draws its live progress as people see it")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    size = args.size or (256 << 20 if args.quick else 1 << 30)
    repeat = args.repeat or (1 if args.quick else 3)
    clients_list = [int(part) for part in args.clients.split(",")]
    if not benchlib.have("curl"):
        print("bench_download: curl is needed", file=sys.stderr)
        return 1

    def progress(line):
        print("  " + line, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    folder = tempfile.mkdtemp(prefix="woof-bench-", dir="/tmp")
    servers = []
    try:
        files = os.path.join(folder, "files")
        os.mkdir(files)
        path = benchlib.make_random_file(os.path.join(files, FILE_NAME), size)
        servers.append(Woof(path, args.python, unlimited=args.unlimited,
                            terminal=args.terminal))
        if args.baseline:
            servers.append(Woof(path, args.python, name="baseline",
                                script=os.path.abspath(args.baseline),
                                unlimited=args.unlimited, terminal=args.terminal))
        servers.append(start_http_server(files, path, sys.executable))
        if benchlib.have("nginx") and not args.no_nginx:
            servers.append(start_nginx(folder, path))
        startup, idle_peak, servers[0].idle_cpu, resident = measure_woof_idle(
            path, args.python, STARTUP_SAMPLES, args.terminal)
        if args.baseline:
            baseline_idle = measure_woof_idle(path, args.python, STARTUP_SAMPLES, args.terminal,
                                              os.path.abspath(args.baseline))
        medians, runs = measure(servers, clients_list, repeat, size, progress)
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(folder, ignore_errors=True)

    print("download of %g MiB with curl to /dev/null, median of %d, woof under %s%s, "
          "http.server under %s, %d CPU(s)"
          % (size / (1 << 20), repeat, python_version(args.python),
             " drawing its progress on a terminal" if args.terminal else "",
             python_version(sys.executable), os.cpu_count()))
    benchlib.report(table_rows(servers, clients_list, medians, runs, size),
                    ("server", "clients", "median s", "best s", "MiB/s", "woof/this", "spread",
                     "CPU s/GiB", "peak MiB"))
    print("MiB/s and woof/this from the medians; "
          "woof/this: woof's time over this server's (below 1: woof was faster); "
          "spread: (max - min) / median;\nCPU s/GiB: server CPU time per GiB sent "
          "(woof: median per run less an idle run's; others: whole run)")
    print("woof.py start-up to printed URL: %.0f ms (median of %d); idle run: %.0f ms CPU, "
          "peak RSS %.1f MiB, resident once started %.1f MiB"
          % (startup * 1000, STARTUP_SAMPLES, servers[0].idle_cpu * 1000, idle_peak, resident))
    if args.baseline:
        print("baseline start-up to printed URL: %.0f ms; idle run: %.0f ms CPU, peak RSS %.1f "
              "MiB, resident once started %.1f MiB"
              % (baseline_idle[0] * 1000, baseline_idle[2] * 1000, baseline_idle[1],
                 baseline_idle[3]))
    woofs = [server.name for server in servers if isinstance(server, Woof)]
    for line in verdicts(medians, clients_list, servers[0].peak(), woofs):
        print(line)
    print("load average (1 min) %.2f before, %.2f after: other work on the machine "
          "makes the figures noisy" % (load_before, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
