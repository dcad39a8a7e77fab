#!/usr/bin/env python3
"""Tests for woof.py: real servers on 127.0.0.1 port 0, real sockets, real clients.

    python3 test_woof.py [-v] [TestClass[.test_name] ...]

Set WOOF_TEST_STRICT=1 to fail, rather than skip, when curl, wget, aria2c or
another client the tests use is missing.

Sections, in file order (their banners, shortened), and what of woof.py each tests:

    (before the first banner)  the harness: wait_until, tree_of, ServerRun, WoofTestCase
    Pure helpers               Pure helpers, Network discovery (ranking), woofrc
    Serving one file           Response bodies to Server: downloads, the gate, the ledger
    Archives                   Compression, Archive manifest to Archive offer
    Receiving files (-U)       Receiving, the upload handler
    Terminal: QR code          Terminal (the QR code)
    Security: the certificate  Security (DER, ECDSA, the throwaway certificate)
    The command line           Command line, main()
    The URLs woof prints       Network discovery, in network namespaces
    Reaching the right person  Security (secret, password, HTTPS, Host), --expire
    Real clients               curl, wget, aria2c against the server
    The sender's terminal      Terminal (live progress), Output
    Checksums, end to end      the SHA-256 printed and sent (Repr-Digest)
    Resumable uploads          Receiving: resumable uploads, their handler
    A real browser             the upload page in Chromium
    Client mode                Client mode
    The suite itself           .ci/run, --platform
    Running the suite          the runner: "N passed, N failed"
"""

import base64
import bz2
import codecs
import collections
import contextlib
import errno
import gzip
import html
import hashlib
import heapq
import http.client
import http.server
import io
import ipaddress
import json
import lzma
import marshal
import os
import queue
import random
import re
import select
import selectors
import shlex
import shutil
import socket
import socketserver
import ssl
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import types
import unittest
import unittest.mock as mock
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

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


def symlinks_missing():
    """Why the tests can make no symbolic links here, or None when they can."""
    if not hasattr(os, "symlink"):
        return "no symbolic links here"
    with tempfile.TemporaryDirectory() as folder:
        link = os.path.join(folder, "link")
        try:
            os.symlink(folder, link)
        except OSError as error:  # Windows without the privilege or developer mode
            return "symbolic links cannot be made here: %s" % (error.strerror or error)
        if not os.path.islink(link):
            return "Wine: symlinks are not created"  # os.symlink reports success
    return None


NO_SYMLINKS = symlinks_missing()
SYMLINKS = NO_SYMLINKS is None


def skip_or_fail(reason):
    """Skip a test that lacks what it needs, or fail it when strict."""
    if STRICT:
        raise AssertionError(reason + " (WOOF_TEST_STRICT=1)")
    raise unittest.SkipTest(reason)


def require_tool(name):
    """The path of a command-line client; skip (or fail when strict) without it."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail("%s is not installed" % name)
    return path


def tree_of(folder, folder_value=None):
    """{path below folder, "/"-separated: what stands there}, hidden names
    too: a file's bytes, a link's "->target", a folder as folder_value
    ("dir" as read_archive says), "special" for a FIFO or device (never
    opened).  The one helper that reads a folder."""
    found = {}
    for parent, folders, names in os.walk(folder):
        for name in folders + names:
            path = os.path.join(parent, name)
            key = os.path.relpath(path, folder).replace(os.sep, "/")
            if os.path.islink(path):
                found[key] = "->" + os.readlink(path)
            elif os.path.isdir(path):
                found[key] = folder_value
            elif not os.path.isfile(path):
                found[key] = "special"
            else:
                with open(path, "rb") as handle:
                    found[key] = handle.read()
    return found


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

    def slow_client(self, run):
        """A socket that asked for the offer (and to close after it) and reads
        nothing until the test does: its small receive buffer keeps the transfer
        in flight."""
        raw = socket.socket()
        self.addCleanup(raw.close)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        raw.settimeout(DEADLINE)
        raw.connect(("127.0.0.1", run.server.port))
        raw.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                    % run.server.offer_path.encode())
        return raw


# ---------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------

class RangeParsingTests(unittest.TestCase):

    def test_range_headers_select_the_right_span(self):
        table = [
            ("bytes=0-9", 100, (0, 10)),
            ("bytes=90-", 100, (90, 100)),
            ("bytes=-10", 100, (90, 100)),
            ("bytes=-1000", 100, (0, 100)),
            ("bytes=95-1000", 100, (95, 100)),
            ("BYTES = 5-6", 100, (5, 7)),
            ("bytes=0-0", 1, (0, 1)),
            ("bytes=0-4,5-9", 100, (0, 10)),
            ("bytes=0-9,3-5,-95", 100, (0, 100)),
            ("bytes=0-0,,2-3", 100, None),
            ("bytes=0-1,50-60", 100, None),
            ("bytes=5-4", 100, None),
            ("bytes=abc", 100, None),
            ("bytes=-", 100, None),
            ("bytes=1-2-3", 100, None),
            ("items=0-9", 100, None),
            ("bytes=", 100, None),
            ("0-9", 100, None),
            ("bytes=1" + "0" * 30 + "-", 100, None),
            ("bytes=0-" + "9" * 19, 100, (0, 100)),
        ]
        for header, size, expected in table:
            with self.subTest(header=header):
                self.assertEqual(woof.parse_range(header, size), expected)

    def test_unsatisfiable_and_abusive_ranges_are_refused(self):
        table = [
            ("bytes=100-", 100),
            ("bytes=100-200", 100),
            ("bytes=-0", 100),
            ("bytes=0-", 0),
            ("bytes=-5", 0),
            ("bytes=" + ",".join(["0-"] * (woof.MAX_RANGES + 1)), 100),
        ]
        for header, size in table:
            with self.subTest(header=header[:40]):
                with self.assertRaises(woof.UnsatisfiableRange):
                    woof.parse_range(header, size)


class NameAndHeaderTests(unittest.TestCase):

    def test_content_disposition_keeps_any_name(self):
        table = [
            ("report.pdf", 'attachment; filename="report.pdf"'),
            ("r\u00e9sum\u00e9 #1.pdf",
             "attachment; filename=\"resume #1.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20#1.pdf"),
            ('say "hi".txt',
             "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"),
            ("100%.txt", "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt"),
            ("\U0001F600.png", "attachment; filename=\"_.png\"; filename*=UTF-8''%F0%9F%98%80.png"),
            ("caf\udce9.txt", "attachment; filename=\"caf_.txt\"; filename*=UTF-8''caf%E9.txt"),
            ("a\\b\nc", "attachment; filename=\"a_b_c\"; filename*=UTF-8''a%5Cb%0Ac"),
        ]
        for name, expected in table:
            with self.subTest(name=name):
                value = woof.content_disposition(name)
                self.assertEqual(value, expected)
                value.encode("ascii")

    def test_url_paths_decode_back_to_the_name(self):
        for name in ["plain.txt", "report 2024 #1 \u00e9t\u00e9.pdf", "a?b&c=d;e",
                     "100% sure", "caf\udce9", "\u65e5\u672c.txt", "+plus+"]:
            with self.subTest(name=name):
                path = woof.url_path_for(name)
                self.assertRegex(path, r"^/[A-Za-z0-9%._~-]*$")
                self.assertEqual(woof.request_path(path + "?x=1"), "/" + name)

    def test_the_example_name_gets_the_documented_url(self):
        self.assertEqual(woof.url_path_for("report 2024 #1 \u00e9t\u00e9.pdf"),
                         "/report%202024%20%231%20%C3%A9t%C3%A9.pdf")

    def test_content_types_follow_the_name(self):
        table = [("a.pdf", "application/pdf"), ("a.tar.gz", "application/gzip"),
                 ("a.txt", "text/plain"), ("noext", "application/octet-stream"),
                 ("a.tar.bz2", "application/x-bzip2")]
        for name, expected in table:
            with self.subTest(name=name):
                self.assertEqual(woof.guess_content_type(name), expected)

    def test_sizes_read_like_people_write_them(self):
        table = [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
                 (5 << 30, "5.0 GiB"), (3 << 50, "3072.0 TiB")]
        for count, expected in table:
            with self.subTest(count=count):
                self.assertEqual(woof.format_size(count), expected)

    def test_client_hosts_drop_the_ipv4_mapped_prefix(self):
        self.assertEqual(woof.client_host(("::ffff:10.0.0.5", 1, 0, 0)), "10.0.0.5")
        self.assertEqual(woof.client_host(("::1", 1, 0, 0)), "::1")
        self.assertEqual(woof.url_host("fe80::1"), "[fe80::1]")
        self.assertEqual(woof.url_host("10.0.0.5"), "10.0.0.5")

    @unittest.skipUnless(woof.ipv6_dual_stack_available(), "no dual-stack IPv6 here")
    def test_by_default_woof_listens_on_ipv6_and_ipv4_at_once(self):
        family, address = woof.resolve_bind_address(None, 0)
        self.assertEqual((family, address), (socket.AF_INET6, ("::", 0)))
        server = woof.WoofServer(woof.Settings(ip="::1", port=0), None, woof.Log(quiet=True))
        self.addCleanup(server.server_close)
        self.assertEqual(server.address_family, socket.AF_INET6)

    def test_outgoing_address_is_an_address_or_none(self):
        address = woof.outgoing_address(socket.AF_INET)
        if address is not None:
            socket.inet_aton(address)
        hosts = [host for host, _ in woof.advertised_hosts("0.0.0.0")]
        self.assertIn(address or "127.0.0.1", hosts)
        self.assertEqual(woof.advertised_hosts("127.0.0.1"), [("127.0.0.1", "")])


LocalAddress = woof.LocalAddress
VPN = woof.VPN_NOTE


def ifreq(label, family, address):
    """One struct ifreq record of a SIOCGIFCONF answer, as the kernel writes it."""
    record = label.ljust(woof.IFNAMSIZ, b"\0") + struct.pack("H", family) + b"\0\0"
    return (record + socket.inet_aton(address)).ljust(woof.IFREQ_SIZE, b"\0")


class AdvertisedHostTests(unittest.TestCase):
    """Which addresses woof prints, and in what order, from synthetic tables."""

    def test_hosts_are_ranked_default_route_then_ipv4_then_interface_order_vpn_last(self):
        table = [
            ("a VPN holding the default route comes after the LAN",
             [LocalAddress("100.64.0.7", "wg0", 2, True), LocalAddress("192.168.1.20", "eth0", 3),
              LocalAddress("fd00::20", "eth0", 3)],
             [("192.168.1.20", ""), ("fd00::20", ""), ("100.64.0.7", VPN)]),
            ("the default route's interface comes first",
             [LocalAddress("10.0.0.5", "eth1", 2), LocalAddress("192.168.1.20", "wlan0", 3, True)],
             [("192.168.1.20", ""), ("10.0.0.5", "")]),
            ("IPv4 before IPv6 on one interface, whatever the system's order",
             [LocalAddress("fd00::20", "eth0", 2, True),
              LocalAddress("192.168.1.20", "eth0", 2, True)],
             [("192.168.1.20", ""), ("fd00::20", "")]),
            ("the default interface's IPv6 before another interface's IPv4",
             [LocalAddress("10.0.0.5", "eth1", 3), LocalAddress("fd00::20", "eth0", 2, True)],
             [("fd00::20", ""), ("10.0.0.5", "")]),
            ("private before global on one interface",
             [LocalAddress("2001:db8::20", "eth0", 2, True),
              LocalAddress("fd00::20", "eth0", 2, True)],
             [("fd00::20", ""), ("2001:db8::20", "")]),
            ("interfaces in the system's order, not the list's",
             [LocalAddress("10.0.0.9", "eth2", 4), LocalAddress("10.0.0.5", "eth1", 2)],
             [("10.0.0.5", ""), ("10.0.0.9", "")]),
            ("VPNs ranked among themselves the same way",
             [LocalAddress("10.8.0.6", "tun0", 2), LocalAddress("100.64.0.7", "wg0", 5, True)],
             [("100.64.0.7", VPN), ("10.8.0.6", VPN)]),
            ("an address listed twice is printed once",
             [LocalAddress("192.168.1.20", "", 0, True), LocalAddress("192.168.1.20")],
             [("192.168.1.20", "")]),
            ("addresses from the host name, outgoing one first",
             [LocalAddress("100.64.1.2", "", 0, True), LocalAddress("192.168.1.20"),
              LocalAddress("127.0.1.1")],
             [("192.168.1.20", ""), ("100.64.1.2", VPN)]),
            ("nothing but loopback gives nothing", [LocalAddress("127.0.0.1", "lo", 1)], []),
        ]
        for case, addresses, expected in table:
            with self.subTest(case):
                self.assertEqual(woof.ranked_hosts(addresses), expected)

    def test_loopback_link_local_and_local_bridges_are_left_out(self):
        left_out = [("127.0.0.1", "lo"), ("::1", "lo"), ("169.254.3.4", "eth0"),
                    ("fe80::1", "eth0"), ("fe80::1%eth0", ""), ("172.17.0.1", "docker0"),
                    ("172.18.0.1", "br-0a1b2c3d4e5f"), ("172.19.0.1", "veth12ab34c"),
                    ("192.168.122.1", "virbr0"), ("10.88.0.1", "cni-podman0"),
                    ("10.89.0.1", "podman1"), ("10.22.0.1", "cni0"), ("192.168.56.1", "vboxnet0"),
                    ("10.0.3.1", "lxcbr0"), ("10.10.10.1", "lxdbr0"), ("172.16.5.1", "vmnet8"),
                    ("0.0.0.0", "eth0"), ("224.0.0.1", "eth0")]
        for address, interface in left_out:
            with self.subTest(address=address, interface=interface):
                self.assertEqual(woof.ranked_hosts([LocalAddress(address, interface, 2)]), [])
        kept = [("192.168.1.20", "br0"), ("203.0.113.9", "eth0"), ("2001:db8::9", "eth0"),
                ("100.128.0.1", "eth0"), ("192.0.2.2", "enp3s0")]
        for address, interface in kept:
            with self.subTest(address=address, interface=interface):
                self.assertEqual(woof.ranked_hosts([LocalAddress(address, interface, 2)]),
                                 [(address, "")])

    def test_vpns_are_known_by_name_point_to_point_link_or_shared_address_space(self):
        table = [("10.8.0.2", "tun0", False), ("10.8.1.2", "tap0", False),
                 ("10.7.0.2", "wg0", False), ("fd7a:115c:a1e0::5", "utun3", False),
                 ("10.64.64.64", "ppp0", False), ("fd7a:115c:a1e0::6", "tailscale0", False),
                 ("10.147.17.5", "zt7nnig26", False), ("10.9.0.2", "corp0", True),
                 ("100.100.1.1", "eth0", False), ("100.64.0.1", "", False)]
        for address, interface, point_to_point in table:
            with self.subTest(address=address, interface=interface):
                local = LocalAddress(address, interface, 2, False, point_to_point)
                self.assertEqual(woof.ranked_hosts([local]), [(address, VPN)])

    def test_ipv4_addresses_are_read_from_a_siocgifconf_answer(self):
        answer = (ifreq(b"lo", socket.AF_INET, "127.0.0.1")
                  + ifreq(b"eth0", socket.AF_INET, "192.168.1.20")
                  + ifreq(b"eth0:1", socket.AF_INET, "192.168.2.20")
                  + ifreq(b"odd0", socket.AF_INET + 1, "10.0.0.1")
                  + ifreq(b"wg0", socket.AF_INET, "100.64.0.7")[:woof.IFREQ_SIZE - 1])
        self.assertEqual(woof.ipv4_interface_addresses(answer),
                         [("lo", "127.0.0.1"), ("eth0", "192.168.1.20"), ("eth0", "192.168.2.20")])
        self.assertEqual(woof.ipv4_interface_addresses(b""), [])

    def test_temporary_deprecated_and_unconfirmed_ipv6_addresses_are_left_out(self):
        lines = [("fd000000000000000000000000000020", "80", True),  # permanent
                 ("fd000000000000000000000000000021", "82", True),  # no duplicate check
                 ("fd000000000000000000000000000022", "00", True),  # from router advertisements
                 ("20010db8000000000000000000000023", "01", False),  # temporary (RFC 4941)
                 ("fd000000000000000000000000000024", "08", False),  # duplicate found
                 ("fd000000000000000000000000000025", "a0", False),  # deprecated
                 ("fd000000000000000000000000000026", "c0", False),  # still being checked
                 ("fe80000000000000a8e735fffefb2bef", "80", True)]  # link-local: ranking's job
        text = "".join("%s 03 40 00 %s     eth0\n" % (address, flags)
                       for address, flags, _ in lines)
        text += "00000000000000000000000000000001 01 80 10 80       lo\ngarbage\n"
        expected = [("eth0", str(woof.ipaddress.IPv6Address(bytes.fromhex(address))))
                    for address, _, kept in lines if kept] + [("lo", "::1")]
        self.assertEqual(woof.ipv6_interface_addresses(text), expected)

    def test_default_routes_are_read_from_the_proc_tables(self):
        ipv4 = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU"
                "\tWindow\tIRTT\n"
                "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
                "eth2\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
                "eth3\t00000000\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"
                "*\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n")
        zero = "0" * 32
        ipv6 = ("%s 00 %s 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003"
                "     eth1\n" % (zero, zero)
                + "%s 00 %s 00 %s ffffffff 00000001 00000000 00200200       lo\n"
                % (zero, zero, zero)
                + "fd000000000000000000000000000000 40 %s 00 %s 00000100 00000001 00000000 00000001"
                "     eth4\n" % (zero, zero))
        self.assertEqual(woof.default_route_interfaces(ipv4, ipv6), {"eth0", "eth1"})
        self.assertEqual(woof.default_route_interfaces("", ""), set())

    def test_addresses_of_interfaces_down_or_without_carrier_are_left_out(self):
        pairs = [("eth0", "192.168.1.20"), ("eth1", "10.0.0.5"), ("tun0", "10.8.0.2"),
                 ("corp0", "10.9.0.2"), ("eth0", "fd00::20"), ("new0", "10.7.0.1")]
        running = woof.IFF_UP | woof.IFF_RUNNING
        flags = {"eth0": running, "eth1": woof.IFF_UP, "tun0": woof.IFF_POINTOPOINT,
                 "corp0": running | woof.IFF_POINTOPOINT}
        indexes = {"lo": 1, "eth0": 2, "eth1": 3, "tun0": 4, "corp0": 5}
        self.assertEqual(woof.interface_addresses(pairs, indexes, {"eth0", "tun0"}, flags), [
            LocalAddress("192.168.1.20", "eth0", 2, True, False),
            LocalAddress("10.9.0.2", "corp0", 5, False, True),
            LocalAddress("fd00::20", "eth0", 2, True, False),
            LocalAddress("10.7.0.1", "new0", 5, False, False)])

    def test_a_server_bound_to_one_address_advertises_just_that_one(self):
        for host in ("127.0.0.1", "::1", "192.168.1.20", "fd00::20"):
            with self.subTest(host=host):
                self.assertEqual(woof.advertised_hosts(host), [(host, "")])

    def test_host_name_addresses_begin_with_the_outgoing_address(self):
        addresses = woof.host_name_addresses((socket.AF_INET,), "127.0.0.1")
        outgoing = woof.outgoing_address(socket.AF_INET)
        expected = [LocalAddress(outgoing, on_default_route=True)] if outgoing else []
        self.assertEqual(addresses, expected + [LocalAddress("127.0.0.1")])

    def test_further_urls_are_aligned_under_the_first_with_their_note(self):
        urls = [("http://192.168.1.20:8080/f.iso", ""), ("http://[fd00::20]:8080/f.iso", ""),
                ("http://100.64.0.7:8080/f.iso", VPN)]
        table = [
            ("Now serving", urls[:1], "Now serving on http://192.168.1.20:8080/f.iso"),
            ("Now serving", urls,
             "Now serving on http://192.168.1.20:8080/f.iso\n"
             "            or http://[fd00::20]:8080/f.iso\n"
             "            or http://100.64.0.7:8080/f.iso  (VPN)"),
            ("Now receiving", [("http://100.64.0.7:8080/", VPN), ("http://10.8.0.6:8080/", VPN)],
             "Now receiving on http://100.64.0.7:8080/\n"
             "              or http://10.8.0.6:8080/  (VPN)"),
        ]
        for lead, urls_given, expected in table:
            with self.subTest(lead=lead, urls=len(urls_given)):
                self.assertEqual(woof.announcement(lead, urls_given), expected)


class ConfigTests(WoofTestCase):

    def write_config(self, name, text):
        return self.make_file(name, text.encode("utf-8"))

    def test_later_woofrc_files_override_earlier_ones(self):
        system = self.write_config("etc-woofrc", "[main]\nport = 9000\ncount = 2\nip = 10.0.0.1\n")
        user = self.write_config("user-woofrc", "[main]\nport = 9100\ncompressed = off\n")
        missing = os.path.join(self.tmp, "absent")
        defaults = woof.read_config([system, missing, user])
        self.assertEqual(defaults, {"port": 9100, "count": 2, "ip": "10.0.0.1",
                                    "compression": "tar"})

    def test_command_line_overrides_woofrc(self):
        user = self.write_config("woofrc", "[main]\nport = 9100\ncount = 3\ncompressed = zip\n")
        parser = woof.build_parser(woof.read_config([user]))
        args = woof.parse_command_line(parser, ["-p", "0", "-j", "x"])
        settings = woof.settings_from(args)
        self.assertEqual((settings.port, settings.count, settings.compression), (0, 3, "bz2"))
        settings = woof.settings_from(woof.parse_command_line(parser, ["x"]))
        self.assertEqual((settings.port, settings.count, settings.compression), (9100, 3, "zip"))

    def test_compressed_values_are_understood_as_woof_users_write_them(self):
        table = [("gz", "gz"), ("true", "gz"), ("bz2", "bz2"), ("zip", "zip"),
                 ("off", "tar"), ("false", "tar"), ("xz", "xz"), (" GZ ", "gz")]
        for word, expected in table:
            with self.subTest(word=word):
                path = self.write_config("woofrc-" + word.strip(), "[main]\ncompressed = %s\n" % word)
                self.assertEqual(woof.read_config([path]), {"compression": expected})

    def test_comments_are_allowed_on_their_own_line_and_after_a_value(self):
        path = self.write_config("woofrc", "# mine\n[main]\n; the port\nport = 9000 # fixed\n"
                                           "compressed = gz        ; gz, bz2, xz, zip or off\n")
        self.assertEqual(woof.read_config([path]), {"port": 9000, "compression": "gz"})

    def test_the_readme_woofrc_example_is_read_as_written(self):
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as readme:
            example = re.search(r"```\n(\[main\]\n.*?)```", readme.read(), re.S).group(1)
        path = self.write_config("woofrc", example)
        self.assertEqual(woof.read_config([path]), {"port": 8080, "count": 1,
                                                    "ip": "192.168.1.20", "compression": "gz",
                                                    "qr": True, "secret": True, "store": True})

    def test_unknown_keys_are_ignored_with_one_warning(self):
        path = self.write_config("woofrc", "[main]\nport = 9000\nprot = 9001\ncolour = yes\n")
        warnings = []
        self.assertEqual(woof.read_config([path], warnings.append), {"port": 9000})
        self.assertEqual(len(warnings), 1)
        self.assertIn(path, warnings[0])
        self.assertIn("prot, colour", warnings[0])

    def test_a_woofrc_with_an_unknown_key_still_lets_woof_start(self):
        config = self.write_config("woofrc", "[main]\ncompresed = zip ; a typo\n")
        stderr, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            self.assertEqual(woof.main(["--help"], config_paths=[config]), 0)
        self.assertEqual(stderr.getvalue().count("\n"), 1)
        self.assertRegex(stderr.getvalue(), r"^woof: warning: .*woofrc: ignoring key compresed")
        self.assertIn("examples", stdout.getvalue())

    def test_no_flags_turn_a_woofrc_yes_off_for_one_run(self):
        on = woof.read_config([self.write_config("on", "[main]\nqr = yes\nsecret = yes\n"
                                                       "store = yes\ncompressed = zip\n")])
        off = woof.read_config([self.write_config("off", "[main]\nqr = no\n")])
        table = [(on, [], (True, True, True)),
                 (on, ["--no-qr", "--no-secret", "--no-store"], (False, False, False)),
                 (on, ["--no-qr"], (False, True, True)),
                 ({}, [], (False, False, False)),
                 ({}, ["--qr", "--secret"], (True, True, False)),
                 (off, ["--qr"], (True, False, False))]
        for config, argv, expected in table:
            with self.subTest(config=config, argv=argv):
                args = woof.parse_command_line(woof.build_parser(config), argv + ["x"])
                settings = woof.settings_from(args)
                self.assertEqual((settings.qr, settings.secret is not None,
                                  args.store or args.configured_store), expected)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.assertEqual(woof.main(["--help"], config_paths=()), 0)
        for flag in ("--no-qr", "--no-secret", "--no-store"):
            self.assertIn(flag, stdout.getvalue())

    def test_woofrc_mistakes_say_the_file_and_line_and_what_to_do(self):
        table = [("[main]\nport = 9000\nqr\n", "line 3 is not a setting; write key = value"),
                 ("port = 9000\n", "line 1: 'port = 9000' comes before any [main]; "
                                   "put [main] above the settings")]
        for text, message in table:
            with self.subTest(text=text):
                path = self.write_config("woofrc", text)
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    self.assertEqual(woof.main(["x"], config_paths=[path]), 1)
                self.assertEqual(stderr.getvalue(),
                                 "woof: error: cannot read %s: %s\n" % (path, message))

    def test_a_misspelt_section_gets_one_warning(self):
        path = self.write_config("woofrc", "[mian]\nport = 9000\nqr = yes\n[extra]\nx = 1\n")
        warnings = []
        self.assertEqual(woof.read_config([path], warnings.append), {})
        self.assertEqual(warnings, ["%s: ignoring [mian], [extra] (woof reads only [main])"
                                    % path])

    def test_a_bad_woofrc_value_names_the_file_and_the_key(self):
        table = ["[main]\nport = eighty\n", "[main]\ncount = -1\n", "[main]\ncompressed = rar\n",
                 "port = 1\n", "[main\n"]
        for text in table:
            with self.subTest(text=text):
                path = self.write_config("woofrc", text)
                with self.assertRaises(woof.WoofError) as caught:
                    woof.read_config([path])
                self.assertIn(path, str(caught.exception))
                self.assertNotIn("\n", str(caught.exception))


# ---------------------------------------------------------------------------
# Serving one file
# ---------------------------------------------------------------------------

class DownloadTests(WoofTestCase):

    def test_the_last_download_wakes_the_wait_for_connections(self):
        offer = woof.FileOffer(self.make_file("f.txt", b"data"))
        server = woof.WoofServer(self.settings(), offer, woof.Log(stream=self.log_stream))
        server.timeout = 3600  # no waking by the clock: only the download may end the wait
        run = ServerRun(server)
        self.addCleanup(run.stop)
        response, data = self.request(run)
        self.assert_response(response, data, 200, body=b"data")
        run.wait()

    def test_a_get_sends_the_exact_bytes_with_their_headers_and_ends_woof(self):
        data = os.urandom(300000)
        run = self.start(self.make_file("report 2024 #1 \u00e9t\u00e9.pdf", data))
        self.assertEqual(run.server.offer_path, "/report%202024%20%231%20%C3%A9t%C3%A9.pdf")
        response, body = self.request(run)
        self.assert_response(response, body, 200, {
            "Content-Length": str(len(data)),
            "Content-Type": "application/pdf",
            "Accept-Ranges": "bytes",
            "Content-Disposition": "attachment; filename=\"report 2024 #1 ete.pdf\"; "
                                   "filename*=UTF-8''report%202024%20#1%20%C3%A9t%C3%A9.pdf",
        }, data)
        self.assertTrue(response.getheader("ETag").startswith('"'))
        self.assertIsNotNone(woof.parse_http_date(response.getheader("Last-Modified")))
        run.wait()
        self.assertIsNone(run.error)
        self.assertIn("download 1 of 1 complete", self.log_text())

    def test_head_and_probes_do_not_count(self):
        data = b"0123456789" * 1000
        run = self.start(self.make_file("probe.bin", data))
        connection = self.connect(run)
        response, body = self.request(run, "HEAD", connection=connection)
        self.assert_response(response, body, 200, {"Content-Length": "10000"}, b"")
        response, body = self.request(run, headers={"Range": "bytes=0-0"}, connection=connection)
        self.assert_response(response, body, 206, {"Content-Range": "bytes 0-0/10000"}, b"0")
        response, body = self.request(run, "GET", "/", connection=connection)
        self.assert_response(response, body, 302, {"Location": "/probe.bin"})
        response, body = self.request(run, "GET", "/favicon.ico", connection=connection)
        self.assert_response(response, body, 404)
        self.assertFalse(run.server.finished.is_set())
        response, body = self.request(run, connection=connection)
        self.assert_response(response, body, 200, body=data)
        run.wait()

    def test_a_download_counts_once_its_ranges_cover_the_file(self):
        data = os.urandom(50000)
        run = self.start(self.make_file("parts.bin", data))
        pieces = []
        for header in ("bytes=0-19999", "bytes=10000-39999", "bytes=40000-"):
            self.assertFalse(run.server.finished.is_set())
            response, body = self.request(run, headers={"Range": header})
            self.assertEqual(response.status, 206)
            pieces.append(body)
        run.wait()
        self.assertEqual(pieces[0] + pieces[1][10000:] + pieces[2], data)

    def test_every_other_path_redirects_to_the_offer_and_never_leaks(self):
        secret = self.make_file("secret.txt", b"top secret")
        offered = self.make_file(os.path.join("pub", "offered.txt"), b"public")
        run = self.start(offered)
        hostile = ["/", "/index.html", "/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt",
                   "/%252e%252e%252fsecret.txt", "//etc/passwd", "/offered.txt/../../secret.txt",
                   "/..\\..\\secret.txt", "/%c0%ae%c0%ae/secret.txt", "/etc/passwd",
                   "/offered.txt%00.jpg", "/offered.txt/", "/OFFERED.TXT", "/%2Fetc%2Fpasswd",
                   "http://127.0.0.1:%d/../secret.txt" % run.server.port, secret]
        connection = self.connect(run)
        for path in hostile:
            with self.subTest(path=path):
                response, body = self.request(run, path=path, connection=connection)
                self.assert_response(response, body, 302, {"Location": "/offered.txt"}, b"")
        for path in ["/favicon.ico", "/robots.txt", "/.well-known/security.txt"]:
            with self.subTest(path=path):
                response, body = self.request(run, path=path, connection=connection)
                self.assertEqual(response.status, 404)
                self.assertNotIn(b"public", body)
        self.assertFalse(run.server.finished.is_set())

    def test_range_requests_resume_and_refuse_what_cannot_be_served(self):
        data = bytes(range(256)) * 40
        run = self.start(self.make_file("range.bin", data))
        connection = self.connect(run)
        cases = [
            ({"Range": "bytes=100-199"}, 206, data[100:200], "bytes 100-199/10240"),
            ({"Range": "bytes=-16"}, 206, data[-16:], "bytes 10224-10239/10240"),
            ({"Range": "bytes=0-9,10-19"}, 206, data[:20], "bytes 0-19/10240"),
            ({"Range": "bytes=0-9,100-109"}, 200, data, None),
            ({"Range": "bytes=nonsense"}, 200, data, None),
            ({"Range": "bytes=20000-"}, 416, b"", "bytes */10240"),
            ({"Range": "bytes=" + ",".join(["0-1"] * 40)}, 416, b"", "bytes */10240"),
        ]
        for headers, status, expected, content_range in cases:
            with self.subTest(headers=headers["Range"][:30]):
                response, body = self.request(run, headers=headers, connection=connection)
                self.assert_response(response, body, status, {"Content-Range": content_range},
                                     expected)
                # Each full body completed a download; count 1 would end woof,
                # so this test serves a larger count.
                if status == 200:
                    break

    def test_if_range_applies_the_range_only_to_the_same_version(self):
        data = os.urandom(4096)
        run = self.start(self.make_file("ifrange.bin", data), count=5)
        connection = self.connect(run)
        response, _ = self.request(run, "HEAD", connection=connection)
        etag, modified = response.getheader("ETag"), response.getheader("Last-Modified")
        cases = [(etag, 206), (modified, 206), ('"other"', 200), ("W/" + etag, 200),
                 ("Mon, 01 Jan 2001 00:00:00 GMT", 200)]
        for validator, status in cases:
            with self.subTest(validator=validator):
                response, body = self.request(
                    run, headers={"Range": "bytes=10-19", "If-Range": validator},
                    connection=connection)
                self.assert_response(response, body, status, body=data[10:20] if status == 206 else data)

    def test_a_current_cached_copy_gets_304(self):
        run = self.start(self.make_file("cached.txt", b"cached"), count=2)
        connection = self.connect(run)
        response, _ = self.request(run, "HEAD", connection=connection)
        etag = response.getheader("ETag")
        for headers in ({"If-None-Match": etag}, {"If-None-Match": '"x", ' + etag},
                        {"If-Modified-Since": response.getheader("Last-Modified")}):
            with self.subTest(headers=headers):
                response, body = self.request(run, headers=headers, connection=connection)
                self.assert_response(response, body, 304, {"ETag": etag}, b"")
        future = woof.http_date(time.time() + 86400)
        response, body = self.request(run, headers={"If-Modified-Since": future}, connection=connection)
        self.assert_response(response, body, 200, body=b"cached")
        response, body = self.request(run, headers={"If-None-Match": '"stale"'}, connection=connection)
        self.assert_response(response, body, 200, body=b"cached")
        run.wait()

    def test_if_modified_since_is_read_in_all_three_date_forms(self):
        path = self.make_file("old.txt", b"old")
        os.utime(path, (784111777, 784111777))  # Sun, 06 Nov 1994 08:49:37 GMT
        run = self.start(path, count=0)
        connection = self.connect(run)
        table = [("Sun, 06 Nov 1994 08:49:37 GMT", 304), ("Sunday, 06-Nov-94 08:49:37 GMT", 304),
                 ("Sun Nov  6 08:49:37 1994", 304), ("Sat, 05 Nov 1994 08:49:37 GMT", 200),
                 ("Saturday, 05-Nov-94 08:49:37 GMT", 200), ("Sat Nov  5 08:49:37 1994", 200)]
        for date, status in table:
            with self.subTest(date=date):
                response, body = self.request(run, headers={"If-Modified-Since": date},
                                              connection=connection)
                self.assert_response(response, body, status, body=b"" if status == 304 else b"old")

    def test_an_aborted_download_is_not_counted(self):
        data = os.urandom(32 << 20)
        run = self.start(self.make_file("big.bin", data))
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as raw:
            raw.sendall(b"GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            raw.recv(65536)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        wait_until(lambda: "aborted" in self.log_text(), message="the abort to be logged")
        self.assertFalse(run.server.finished.is_set())
        response, body = self.request(run)
        self.assertEqual(body, data)
        run.wait()

    def test_bytes_the_client_never_received_do_not_count(self):
        if not woof.TCP_QUEUE_QUERY:
            self.skipTest("only Linux tells what the peer acknowledged")
        run = self.start(self.make_file("unread.bin", os.urandom(8000)))
        with socket.socket() as raw:
            # A tiny receive window: the file fits in woof's send buffer even
            # at its smallest, but cannot reach the client, like a phone that
            # left the Wi-Fi.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            raw.connect(("127.0.0.1", run.server.port))
            raw.sendall(b"GET /unread.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            # Once bytes arrive, woof has handed the whole file to its kernel.
            readable = select.select([raw], [], [], DEADLINE)[0]
            self.assertTrue(readable, "woof sent nothing")
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        wait_until(lambda: "aborted" in self.log_text(), message="the loss to be logged")
        self.assertFalse(run.server.finished.is_set())
        self.assertNotIn("download 1 of 1 complete", self.log_text())

    def test_a_broken_transfer_credits_only_what_the_client_acknowledged(self):
        if not woof.TCP_QUEUE_QUERY:
            self.skipTest("only Linux tells what the peer acknowledged")
        run = self.start(self.make_file("broken.bin", os.urandom(24 << 20)))
        with socket.socket() as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            window = raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            raw.connect(("127.0.0.1", run.server.port))
            raw.sendall(b"GET /broken.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            read = 0
            while read < (1 << 20):
                # Delayed acknowledgements (RFC 9293, 3.8.6.3), as many
                # clients, and any on a busy machine, send them: what the
                # client read may not be acknowledged yet when it resets.
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
                read += len(raw.recv(65536))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        wait_until(lambda: "aborted" in self.log_text(), message="the abort to be logged")
        credited = run.server.ledger.parts_by_client["127.0.0.1"].spans[0][1]
        # What woof's own send buffer held never reached the client, and
        # what the client got unacknowledged is within its receive window:
        # woof may not send beyond that window past the last acknowledgement.
        self.assertLessEqual(credited, read + 2 * window)
        self.assertGreaterEqual(credited, read - window)

    @unittest.skipUnless(sys.platform.startswith("linux"), "Linux routes all of 127/8 to lo")
    def test_partial_downloads_are_remembered_for_a_bounded_number_of_recent_clients(self):
        data = os.urandom(1000)
        run = self.start(self.make_file("parts.bin", data))
        bound = woof.MAX_CLIENTS_REMEMBERED

        def fetch(host, first, last):
            connection = http.client.HTTPConnection("127.0.0.1", run.server.port,
                                                    timeout=DEADLINE, source_address=(host, 0))
            with contextlib.closing(connection):
                response, body = self.request(run, headers={"Range": "bytes=%d-%d" % (first, last)},
                                              connection=connection)
            self.assert_response(response, body, 206, body=data[first:last + 1])

        others = ("127.0.%d.%d" % (1 + n // 250, 1 + n % 250) for n in range(2 * bound))
        fetch("127.0.0.2", 0, 99)
        for _ in range(bound - 10):
            fetch(next(others), 0, 9)
        fetch("127.0.0.2", 100, 199)  # now among the most recent again
        for _ in range(bound - 10):
            fetch(next(others), 0, 9)
        self.assertLessEqual(len(run.server.ledger.parts_by_client), bound)
        self.assertFalse(run.server.finished.is_set())
        fetch("127.0.0.2", 200, 999)
        run.wait()
        self.assertRegex(self.log_text(), r'127\.0\.0\.2 "GET /parts\.bin HTTP/1\.1" 206 800 B '
                                          r'in [0-9.]+ s \([^)]*\) download 1 of 1 complete')

    def test_count_allows_that_many_downloads_then_refuses_connections(self):
        run = self.start(self.make_file("twice.txt", b"twice"), count=2)
        port = run.server.port
        for _ in range(2):
            self.assertFalse(run.done())
            response, body = self.request(run)
            self.assert_response(response, body, 200, body=b"twice")
        run.wait()
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_the_end_refuses_new_connections_but_lets_transfers_in_flight_finish(self):
        data = os.urandom(16 << 20)
        run = self.start(self.make_file("shared.bin", data))
        port = run.server.port
        slow = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.addCleanup(slow.close)
        slow.sendall(b"GET /shared.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = [slow.recv(65536)]
        response, body = self.request(run)
        self.assertTrue(body == data)

        def refused():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return True
            return False

        wait_until(refused, message="woof to stop accepting connections")
        self.assertFalse(run.done())
        def body_so_far():
            return b"".join(received).partition(b"\r\n\r\n")[2]

        while len(body_so_far()) < len(data):
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            received.append(chunk)
        run.wait()
        self.assertTrue(body_so_far() == data)

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        run = self.start(self.make_file("alive.txt", b"alive"))
        connection = self.connect(run)
        for _ in range(3):
            response, body = self.request(run, "HEAD", connection=connection)
            self.assertEqual(response.status, 200)
            self.assertFalse(response.will_close)
        response, body = self.request(run, connection=connection)
        self.assert_response(response, body, 200, body=b"alive")
        run.wait()

    def test_an_empty_file_downloads_and_counts_even_when_a_range_is_asked(self):
        run = self.start(self.make_file("empty", b""))
        response, body = self.request(run, "HEAD")
        self.assert_response(response, body, 200, {"Content-Length": "0"}, b"")
        self.assertFalse(run.server.finished.is_set())
        response, body = self.request(run, headers={"Range": "bytes=0-"})
        self.assert_response(response, body, 200, {"Content-Length": "0"}, b"")
        run.wait()

    @unittest.skipIf(os.name == "nt", "needs symlinks")
    def test_a_file_replaced_after_start_is_not_served(self):
        secret = self.make_file("secret.txt", b"not offered")
        offered = self.make_file("offered.txt", b"offered")
        run = self.start(offered)
        os.remove(offered)
        os.symlink(secret, offered)
        response, body = self.request(run)
        self.assertEqual(response.status, 410)
        self.assertNotIn(b"not offered", body)
        os.remove(offered)
        os.mkfifo(offered)
        response, body = self.request(run)
        self.assertEqual(response.status, 410)
        self.assertFalse(run.server.finished.is_set())

    def test_names_latin1_cannot_encode_are_served(self):
        data = b"smile"
        run = self.start(self.make_file("\U0001F600 \u65e5\u672c.txt", data))
        response, body = self.request(run)
        self.assert_response(response, body, 200, body=data)
        self.assertIn("filename*=UTF-8''%F0%9F%98%80%20%E6%97%A5%E6%9C%AC.txt",
                      response.getheader("Content-Disposition"))
        run.wait()

    @unittest.skipUnless(sys.platform.startswith("linux"), "needs a file system that takes any bytes")
    def test_names_that_are_not_utf8_are_served(self):
        path = os.path.join(os.fsencode(self.tmp), b"caf\xe9.txt")
        with open(path, "wb") as handle:
            handle.write(b"bytes")
        run = self.start(os.fsdecode(path))
        self.assertEqual(run.server.offer_path, "/caf%E9.txt")
        response, body = self.request(run)
        self.assert_response(response, body, 200, body=b"bytes")

    def test_requests_are_logged_in_one_line_each(self):
        run = self.start(self.make_file("logged.txt", b"logged"))
        connection = self.connect(run)  # one connection, so one thread logs in order
        self.request(run, "HEAD", connection=connection)
        self.request(run, connection=connection)
        run.wait()
        lines = [line for line in self.log_text().splitlines() if '"' in line]
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r'127\.0\.0\.1 "HEAD /logged\.txt HTTP/1\.1" 200$')
        self.assertRegex(lines[1], r'127\.0\.0\.1 "GET /logged\.txt HTTP/1\.1" 200 6 B in '
                                   r'[0-9.]+ s \([^)]+\) download 1 of 1 complete$')

    def test_quiet_logs_no_requests(self):
        log = woof.Log(quiet=True, stream=self.log_stream)
        server = woof.WoofServer(self.settings(), woof.FileOffer(self.make_file("q.txt")), log)
        run = ServerRun(server)
        self.addCleanup(run.stop)
        self.request(run)
        run.wait()
        self.assertEqual(self.log_text(), "")


class HostileRequestTests(WoofTestCase):

    def test_hostile_requests_get_errors_and_woof_keeps_serving(self):
        run = self.start(self.make_file("safe.txt", b"safe"))
        cases = [
            (b"GET /safe.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n", b" 431 "),
            (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b" 414 "),
            (b"\x00\xff\xfe garbage \x01\x02\r\n\r\n", b" 400 "),
            (b"GET /safe.txt HTTP/9.9\r\n\r\n", b" 505 "),
            (b"BREW /safe.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b" 501 "),
            (b"POST /safe.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc", b" 405 "),
            (b"DELETE /safe.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b" 501 "),
            (b"GET /safe.txt HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", b" 431 "),
            (b"GET /safe.txt HTTP/1.1\r\nRange: bytes=" + b"9" * 5000 + b"-\r\n\r\n", b" 200 "),
        ]
        for payload, status in cases:
            with self.subTest(payload=payload[:30]):
                answer = self.raw_exchange(run, payload, read_timeout=DEADLINE)
                self.assertIn(status, answer.split(b"\r\n", 1)[0])
                self.assertFalse(run.server.finished.is_set() and status != b" 200 ")
                if status == b" 200 ":
                    break
        self.assertNotIn("Traceback", self.log_text())

    def test_half_open_connections_do_not_block_a_download(self):
        data = os.urandom(1 << 20)
        run = self.start(self.make_file("real.bin", data), timeout=30.0)
        slow = []
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE)
            self.addCleanup(sock.close)
            sock.sendall(b"GET /real.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        response, body = self.request(run)
        self.assert_response(response, body, 200, body=data)
        run.wait()

    def test_idle_connections_are_dropped_after_the_timeout(self):
        run = self.start(self.make_file("idle.txt"), timeout=0.3)
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as sock:
            sock.sendall(b"GET /idle.txt HTTP/1.1\r\n")
            self.assertEqual(sock.recv(100), b"")
        self.assertFalse(run.server.finished.is_set())


def connect_from(host, port, timeout=DEADLINE):
    """A connection to woof on 127.0.0.1 from the local address host (127.0.0.N)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((host, 0))
        sock.connect(("127.0.0.1", port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRNOTAVAIL:
            raise unittest.SkipTest("this system does not route %s to itself" % host)
        raise
    return sock


def closed_or_answered(sockets):
    """The sockets with something to read: an answer, or the end of the connection."""
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(0)]


def read_to_end(sock):
    """Everything the peer sends until it closes (a reset after its answer counts as a close)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class ConnectionLimitTests(WoofTestCase):
    """One client, however many connections it opens or however slowly it
    talks, cannot keep the others out."""

    HOG = "127.0.0.2"
    HOG_CONNECTIONS = woof.MAX_CONNECTIONS + 4

    def hog(self, run, count=HOG_CONNECTIONS):
        """count connections from HOG, each stopped after one byte of its head;
        returned once woof has taken or refused every one."""
        sockets = []
        for _ in range(count):
            sock = connect_from(self.HOG, run.server.port)
            self.addCleanup(sock.close)
            sock.sendall(b"G")
            sockets.append(sock)
        wait_until(lambda: run.server.gate.connections + len(closed_or_answered(sockets)) == count,
                   message="woof to take or refuse every connection")
        return sockets

    def test_other_addresses_are_served_while_one_address_hogs_connections(self):
        data = os.urandom(1 << 20)
        run = self.start(self.make_file("real.bin", data), timeout=60.0)
        self.hog(run)
        connection = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=DEADLINE,
                                                source_address=("127.0.0.3", 0))
        self.addCleanup(connection.close)
        response, body = self.request(run, connection=connection)
        self.assert_response(response, body, 200, body=data)
        run.wait()

    def test_connections_beyond_an_address_share_get_503_and_one_log_line(self):
        run = self.start(self.make_file("real.bin"), timeout=60.0)
        sockets = self.hog(run)
        refused = closed_or_answered(sockets)
        self.assertEqual(run.server.gate.connections + len(refused), len(sockets))
        self.assertGreater(len(refused), 0)
        for sock in refused:
            answer = read_to_end(sock)
            head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            self.assertEqual(head[0], b"HTTP/1.1 503 Service Unavailable", answer)
            self.assertIn(b"Connection: close", head)
            self.assertTrue(any(line.startswith(b"Retry-After: ") for line in head), answer)
        lines = [line for line in self.log_text().splitlines() if " %s " % self.HOG in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("refused", lines[0])

    def test_aria2c_with_16_connections_and_a_browser_s_6_are_served_while_another_hogs(self):
        aria2c = require_tool("aria2c")
        data = os.urandom(32 << 20)  # 16 ranges of at least 2 MiB (aria2c's -k1M)
        run = self.start(self.make_file("big.bin", data), timeout=60.0)
        self.hog(run)
        browser = [self.connect(run) for _ in range(6)]
        for connection in browser:
            response, body = self.request(run, "HEAD", connection=connection)
            self.assert_response(response, body, 200)
        folder = os.path.join(self.tmp, "client")
        os.mkdir(folder)
        result = subprocess.run([aria2c, "-q", "-x16", "-s16", "-k1M", "--max-tries=1",
                                 self.url(run)], cwd=folder, timeout=DEADLINE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(result.returncode, 0, result.stdout)
        with open(os.path.join(folder, "big.bin"), "rb") as handle:
            self.assertTrue(handle.read() == data, "the bytes differ")
        run.wait()
        self.assertNotIn(" 127.0.0.1 connection refused", self.log_text())

    def test_a_hundred_receivers_behind_one_address_are_served_at_once(self):
        data = os.urandom(64 << 10)
        run = self.start(self.make_file("class.bin", data), count=0, timeout=60.0)
        receivers = []
        for _ in range(100):
            connection = http.client.HTTPConnection("127.0.0.1", run.server.port,
                                                    timeout=DEADLINE,
                                                    source_address=("127.0.0.4", 0))
            self.addCleanup(connection.close)
            connection.connect()
            receivers.append(connection)
        wait_until(lambda: run.server.gate.connections == 100, message="100 connections taken")
        for connection in receivers:
            connection.request("GET", run.server.offer_path)
        for connection in receivers:
            response = connection.getresponse()
            self.assert_response(response, response.read(), 200, body=data)

    def hold(self, run, hosts):
        """One connection from each of hosts (repeat a host to open several),
        each stopped after one byte of its head; returned once woof has taken
        or refused every one."""
        sockets = []
        for host in hosts:
            sock = connect_from(host, run.server.port)
            self.addCleanup(sock.close)
            sock.sendall(b"G")
            sockets.append(sock)
        wait_until(lambda: run.server.gate.connections + len(closed_or_answered(sockets))
                   >= len(sockets), message="woof to take or refuse every connection")
        return sockets

    def assert_a_newcomer_is_served(self, run, data, host="127.0.0.250"):
        connection = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=DEADLINE,
                                                source_address=(host, 0))
        self.addCleanup(connection.close)
        response, body = self.request(run, connection=connection)
        self.assert_response(response, body, 200, body=data)

    def test_three_addresses_filling_every_place_leave_one_for_a_newcomer(self):
        data = os.urandom(1 << 16)
        run = self.start(self.make_file("real.bin", data), timeout=60.0)
        sockets = self.hold(run, ["127.0.0.2"] * 200 + ["127.0.0.3"] * 40 + ["127.0.0.4"] * 40)
        self.assertEqual(run.server.gate.connections, woof.MAX_CONNECTIONS)
        self.assert_a_newcomer_is_served(run, data)
        answers = [read_to_end(sock) for sock in closed_or_answered(sockets[:200])]
        self.assertEqual(answers.count(b""), 1, "one idle connection of the most held gave way")
        run.wait()

    def test_many_addresses_holding_two_each_leave_a_place_for_a_newcomer(self):
        data = os.urandom(1 << 16)
        run = self.start(self.make_file("real.bin", data), timeout=60.0)
        hosts = ["127.0.1.%d" % number for number in range(1, 141)]
        self.hold(run, hosts + hosts)
        self.assertEqual(run.server.gate.connections, woof.MAX_CONNECTIONS)
        self.assert_a_newcomer_is_served(run, data)
        run.wait()

    def test_an_address_holding_few_takes_no_place_from_one_holding_as_few(self):
        run = self.start(self.make_file("real.bin"), timeout=60.0)
        gate = run.server.gate
        with gate.lock:
            for number in range(woof.MAX_CONNECTIONS):
                gate.count_connection("192.0.2.%d" % number, 1)
            self.assertIsNone(gate.idle_place_for("198.51.100.1"))

    def test_address_groups_are_an_ipv6_64_or_one_address(self):
        table = [("192.0.2.7", "192.0.2.7"), ("2001:db8:1:2:a:b:c:d", "2001:db8:1:2::/64"),
                 ("fe80::1%eth0", "fe80::/64"), ("::1", "::/64"), ("localhost", "localhost")]
        for host, group in table:
            with self.subTest(host=host):
                self.assertEqual(woof.address_group(host), group)

    def trickle(self, sock, head, pause=0.25, budget=20.0):
        """Send head a byte at a time, pause seconds apart, until woof closes
        the connection; fail if it still holds on after budget seconds."""
        end = time.monotonic() + budget
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return
            if select.select([sock], [], [], pause)[0]:
                # Over TLS, what arrives may be session tickets rather than data.
                sock.setblocking(False)
                try:
                    answer = sock.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    answer = None
                except (ConnectionResetError, ssl.SSLError):  # 3.6: EOF without close_notify
                    return
                sock.settimeout(DEADLINE)
                if answer == b"":
                    return
                if answer:
                    self.fail("woof answered a request head that was never finished: %r"
                              % answer[:100])
            if time.monotonic() > end:
                self.fail("woof still held a trickled request head after %g s" % budget)
        self.fail("the trickle ran out before the budget")

    SLOW_HEAD = b"GET /slow.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000

    def test_a_trickled_request_head_is_cut_at_the_head_deadline(self):
        run = self.start(self.make_file("slow.txt"), timeout=1.0)
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as sock:
            self.trickle(sock, self.SLOW_HEAD)
        wait_until(lambda: "request head" in self.log_text(), message="a log line")
        self.assertFalse(run.server.finished.is_set())

    def test_a_trickled_request_head_over_tls_is_cut_at_the_head_deadline(self):
        run = self.start(self.make_file("slow.txt"), timeout=3.0, https=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as raw:
            with context.wrap_socket(raw) as sock:
                self.trickle(sock, self.SLOW_HEAD)
        self.assertFalse(run.server.finished.is_set())


class StreamTests(WoofTestCase):

    def pipe_offer(self, chunks, start=None):
        """A StreamOffer of a pipe fed chunks (once `start` is set, if given), then closed."""
        read_end, write_end = os.pipe()
        reader = os.fdopen(read_end, "rb")
        self.addCleanup(reader.close)

        def produce():
            if start is not None:
                start.wait(DEADLINE)
            with contextlib.suppress(BrokenPipeError), os.fdopen(write_end, "wb") as writer:
                for chunk in chunks:
                    writer.write(chunk)
                    writer.flush()

        producer = threading.Thread(target=produce)
        producer.daemon = True
        producer.start()
        return woof.StreamOffer(reader, "piped.log")

    def test_standard_input_streams_once_in_chunks(self):
        chunks = [os.urandom(70000) for _ in range(20)]
        run = self.start(self.pipe_offer(chunks))
        response, body = self.request(run, "HEAD")
        self.assert_response(response, body, 200, {"Transfer-Encoding": "chunked",
                                                   "Accept-Ranges": "none"})
        response, body = self.request(run, headers={"Range": "bytes=0-9"})
        self.assert_response(response, body, 200, {"Content-Length": None}, b"".join(chunks))
        run.wait()
        self.assertIsNone(run.error)

    def test_a_client_gone_early_never_leaves_woof_waiting_forever(self):
        run = self.start(self.pipe_offer([b"still here"]))
        with socket.socket() as raw:
            raw.connect(("127.0.0.1", run.server.port))
            raw.sendall(b"GET /piped.log HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            # Gone once woof has begun to answer: a reset that comes before
            # woof reads the request (Windows may deliver it first) makes no
            # request at all.
            wait_until(lambda: "is downloading piped.log" in self.log_text(),
                       message="the answer to begin")
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        wait_until(lambda: '"GET /piped.log' in self.log_text(), message="the request to be logged")
        # The line may be logged before the response has counted or failed.
        wait_until(lambda: run.server.in_flight == 0 or run.done(), message="the response's end")
        if run.server.completed:
            # The whole stream reached the client's TCP before its reset: delivered.
            run.wait()
            self.assertIsNone(run.error)
        elif run.server.failure is None:
            # Nothing was read from the stream: the next client gets all of it.
            response, body = self.request(run)
            self.assert_response(response, body, 200, body=b"still here")
            run.wait()
            self.assertIsNone(run.error)
        else:
            # Bytes were read for the client that left: woof says so and ends.
            run.wait()
            self.assertIn("cannot be sent again", str(run.error))

    def fetch_stream(self, run, version):
        """The body a new client gets, chunked (HTTP/1.1) or until the close (HTTP/1.0)."""
        if version == "HTTP/1.1":
            response, body = self.request(run)
            self.assert_response(response, body, 200, {"Transfer-Encoding": "chunked"})
            return body
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as raw:
            raw.sendall(b"GET /piped.log HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: raw.recv(1 << 16), b""))
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        return body

    def test_a_client_gone_before_the_first_byte_leaves_the_whole_stream_to_the_next(self):
        chunks = [os.urandom(70000) for _ in range(20)]
        # A client that closes quietly is told apart only where the system
        # says what the peer acknowledged: elsewhere its kernel took the bytes.
        leavings = ("reset", "close") if woof.TCP_QUEUE_QUERY else ("reset",)
        for version in ("HTTP/1.1", "HTTP/1.0"):
            for leaving in leavings:
                with self.subTest(version=version, leaving=leaving):
                    self.log_stream = io.StringIO()
                    produce = threading.Event()
                    run = self.start(self.pipe_offer(chunks, produce))
                    with socket.create_connection(("127.0.0.1", run.server.port),
                                                  timeout=DEADLINE) as raw:
                        raw.sendall(b"GET /piped.log %s\r\nHost: 127.0.0.1\r\n\r\n" % version.encode())
                        head = b""
                        while b"\r\n\r\n" not in head:
                            head += raw.recv(4096)
                        if leaving == "reset":
                            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    # Only now does the pipe give data: woof reads it for a
                    # client that is gone, and must keep it for the next.
                    produce.set()
                    wait_until(lambda: "aborted" in self.log_text(), message="the loss to be logged")
                    self.assertTrue(self.fetch_stream(run, version) == b"".join(chunks),
                                    "the next client did not get the whole stream")
                    run.wait()
                    self.assertIsNone(run.error)

    def test_a_stream_that_fails_to_read_ends_woof_with_an_error(self):
        class FailingStream:
            """A stream whose device fails after its first bytes, as a tty hung up."""

            def __init__(self):
                self.pieces = [b"first bytes"]

            def read1(self, size):
                if self.pieces:
                    return self.pieces.pop()
                raise OSError(errno.EIO, "Input/output error")

            read = read1

        run = self.start(woof.StreamOffer(FailingStream(), "piped.log"))
        with self.assertRaises(http.client.IncompleteRead):
            self.request(run)
        run.wait()
        self.assertIn("standard input could not be read after 11 B had been sent; it cannot be "
                      "sent again", str(run.error))
        self.assertIn("aborted: cannot read the stream: Input/output error", self.log_text())

    def test_an_http_1_0_client_gets_the_stream_until_the_connection_closes(self):
        run = self.start(self.pipe_offer([b"one ", b"two"]))
        answer = self.raw_exchange(run, b"GET /piped.log HTTP/1.0\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertEqual(body, b"one two")
        run.wait()

    def test_a_stream_cut_off_midway_ends_woof_with_an_error(self):
        chunks = [os.urandom(1 << 20) for _ in range(64)]
        run = self.start(self.pipe_offer(chunks))
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as raw:
            raw.sendall(b"GET /piped.log HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            # The client has part of the stream: the rest cannot go to anyone.
            received = 0
            while received < (2 << 20):
                received += len(raw.recv(1 << 16))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        run.wait()
        self.assertIsInstance(run.error, woof.WoofError)
        self.assertRegex(str(run.error), r"^the download of standard input broke off after "
                                         r"[0-9.]+ MiB reached the client; standard input "
                                         r"cannot be sent again$")


# ---------------------------------------------------------------------------
# Archives: folders and several paths
# ---------------------------------------------------------------------------

ARCHIVE_FORMATS = ("tar", "gz", "bz2", "xz", "zip")
NOBODY = 65534
OLD_MTIME = 1500000000


def read_archive(data, compression):
    """{name: bytes, "dir", or ("link", target)} of an archive's members."""
    members = {}
    if compression == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.testzip() is not None:
                raise AssertionError("corrupt zip member %s" % archive.testzip())
            for info in archive.infolist():
                if info.filename.endswith("/"):
                    members[info.filename.rstrip("/")] = "dir"
                else:
                    members[info.filename] = archive.read(info)
        return members
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for info in archive:
            if info.isdir():
                members[info.name] = "dir"
            elif info.issym():
                members[info.name] = ("link", info.linkname)
            else:
                members[info.name] = archive.extractfile(info).read()
    return members


def unpacked_stream(data, compression):
    """The tar inside a compressed tar, to look for bytes that must not be there."""
    unpack = {"gz": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}
    return unpack.get(compression, lambda raw: raw)(data)


# A name that needs escaping in URLs and archives, and that every system takes.
ODD_NAME = "100% #1 & co.txt"
# a.txt's mode in the tree: Windows keeps only a read-only flag (0o751 leaves it off).
A_MODE = 0o666 if os.name == "nt" else 0o751


class ArchiveTestCase(WoofTestCase):
    """Builds a tree with everything that can go wrong, and reads archives back."""

    def make_tricky_tree(self):
        """A folder with odd names, an empty folder, links in and out, and a FIFO."""
        root = os.path.join(self.tmp, "Projet été")
        self.make_file("secret.txt", b"SECRET-OUTSIDE")
        self.make_file("a.txt", b"first file\n", root)
        self.make_file(os.path.join("sub", ODD_NAME), b"odd name\n", root)
        self.make_file(os.path.join("sub", "deeper", "big.bin"), os.urandom(200000), root)
        self.make_file(os.path.join("sub", "photo.jpg"), b"\xff\xd8" + os.urandom(3000), root)
        self.make_file("zero", b"", root)
        os.makedirs(os.path.join(root, "empty"))
        os.chmod(os.path.join(root, "a.txt"), 0o751)
        os.utime(os.path.join(root, "a.txt"), (OLD_MTIME, OLD_MTIME))
        if SYMLINKS:
            os.symlink(os.path.join(self.tmp, "secret.txt"), os.path.join(root, "out"))
            os.symlink(os.path.join(root, "a.txt"), os.path.join(root, "sub", "in"))
        if hasattr(os, "mkfifo"):
            os.mkfifo(os.path.join(root, "pipe"))
        return root

    def expected_tree(self, root, compression):
        top = os.path.basename(root)
        expected = {top: "dir", top + "/empty": "dir", top + "/sub": "dir",
                    top + "/sub/deeper": "dir"}
        for name, content in tree_of(root).items():
            if isinstance(content, bytes):  # files only: links and the FIFO stay out
                expected[top + "/" + name] = content
        if compression != "zip" and SYMLINKS:
            expected[top + "/sub/in"] = ("link", "../a.txt")
        return expected

    def offer(self, paths, compression, **options):
        log = woof.Log(stream=self.log_stream)
        return woof.ArchiveOffer(paths, compression, log, **options)

    def download_each_way(self, offer):
        """The archive downloaded with read-ahead, then without: (with, without)."""
        archives = []
        for read_ahead in (True, False):
            with mock.patch.object(woof, "READ_AHEAD", read_ahead):
                run = self.start(offer, count=1)
                archives.append(self.download(run)[1])
                run.wait()
        return archives

    def download(self, run, headers=None):
        response, data = self.request(run, headers=headers)
        self.assertEqual(response.status, 200, data[:200])
        return response, data

    def body_bytes(self, body, start=0, stop=None, use_sendfile=woof.HAS_OS_SENDFILE,
                   sink_class=woof.ResponseSink):
        """Write a body through a real ResponseSink (or sink_class) and socket; return the bytes."""
        sending, receiving = socket.socketpair()
        received = []

        def receive():
            with receiving:
                while True:
                    chunk = receiving.recv(1 << 16)
                    if not chunk:
                        return
                    received.append(chunk)

        reader = threading.Thread(target=receive)
        reader.start()
        with sending:
            sink = sink_class(sending, use_sendfile=use_sendfile)
            body.write(sink, start, body.size if stop is None else stop)
            sink.finish()
        reader.join(DEADLINE)
        return b"".join(received)

    def make_partial(self, run, path, count):
        response, data = self.request(run, headers={"Range": "bytes=0-%d" % (count - 1)})
        self.assertEqual(response.status, 206)
        with open(path, "wb") as handle:
            handle.write(data)
        return response

    def check_resume_after_a_change_is_refused(self, root, offer, archive_format):
        """curl -C - after a.txt changed gets 409 and keeps its part; a new download has it."""
        curl = require_tool("curl")
        run = self.start(offer, count=2)
        path = os.path.join(self.tmp, "partial." + archive_format)
        self.make_partial(run, path, 3000)
        with open(os.path.join(root, "a.txt"), "ab") as handle:
            handle.write(b"changed\n")
        result = subprocess.run([curl, "-sS", "-C", "-", "-o", path, self.url(run)],
                                stderr=subprocess.PIPE)
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(os.path.getsize(path), 3000)
        wait_until(lambda: '" 409 ' in self.log_text(), message="the refusal to be logged")
        response, data = self.download(run)
        self.assertNotEqual(response.getheader("ETag"), None)
        self.assertEqual(read_archive(data, archive_format)["Projet été/a.txt"],
                         b"first file\nchanged\n")


class ArchiveFormatTests(ArchiveTestCase):

    def test_every_format_round_trips_a_tree_and_leaks_nothing_outside(self):
        root = self.make_tricky_tree()
        for compression in ARCHIVE_FORMATS:
            with self.subTest(compression=compression):
                run = self.start(self.offer([root], compression))
                response, data = self.download(run)
                self.assertEqual(read_archive(data, compression),
                                 self.expected_tree(root, compression))
                self.assertNotIn(b"SECRET-OUTSIDE", unpacked_stream(data, compression))
                wait_until(run.done, message="woof to finish")
                self.assertIsNone(run.error)

    def test_archive_names_and_framing_follow_the_format(self):
        root = self.make_tricky_tree()
        for compression, extension, framing in (
                ("tar", ".tar", "Content-Length"), ("gz", ".tar.gz", "Transfer-Encoding"),
                ("bz2", ".tar.bz2", "Transfer-Encoding"), ("xz", ".tar.xz", "Transfer-Encoding"),
                ("zip", ".zip", "Transfer-Encoding")):
            with self.subTest(compression=compression):
                run = self.start(self.offer([root], compression))
                self.assertEqual(run.server.offer_path, "/Projet%20%C3%A9t%C3%A9" + extension)
                response, data = self.download(run)
                self.assertIn("filename*=UTF-8''Projet%20%C3%A9t%C3%A9" + extension,
                              response.getheader("Content-Disposition"))
                self.assertIsNotNone(response.getheader(framing))
                if compression == "tar":
                    self.assertEqual(int(response.getheader("Content-Length")), len(data))

    def test_tar_keeps_modes_and_modification_times(self):
        root = self.make_tricky_tree()
        run = self.start(self.offer([root], "gz"))
        _, data = self.download(run)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            info = archive.getmember("Projet été/a.txt")
            self.assertEqual((info.mode, info.mtime), (A_MODE, OLD_MTIME))
            self.assertEqual(archive.getmember("Projet été/empty").type, tarfile.DIRTYPE)

    def test_zip_flags_utf8_names_and_stores_compressed_media(self):
        root = self.make_tricky_tree()
        run = self.start(self.offer([root], "zip"))
        _, data = self.download(run)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            photo = archive.getinfo("Projet été/sub/photo.jpg")
            text = archive.getinfo("Projet été/a.txt")
            self.assertEqual(photo.compress_type, zipfile.ZIP_STORED)
            self.assertEqual(text.compress_type, zipfile.ZIP_DEFLATED)
            self.assertTrue(text.flag_bits & 0x800)
            self.assertEqual(text.external_attr >> 16 & 0o777, A_MODE)

    def test_real_tools_open_the_archives(self):
        root = self.make_tricky_tree()
        for compression, tool, check in (("zip", "unzip", ["-t"]), ("gz", "tar", ["-tzf"]),
                                         ("tar", "tar", ["-tf"])):
            with self.subTest(compression=compression):
                command = require_tool(tool)
                run = self.start(self.offer([root], compression))
                _, data = self.download(run)
                path = self.make_file("download." + compression, data)
                result = subprocess.run([command] + check + [path], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
                self.assertEqual(result.returncode, 0, result.stdout)
                self.assertIn(ODD_NAME, result.stdout.decode("utf-8", "replace"))

    def test_links_out_and_fifos_are_left_out_and_logged(self):
        root = self.make_tricky_tree()
        if not SYMLINKS or not hasattr(os, "mkfifo"):
            self.skipTest("needs symbolic links and FIFOs")
        self.offer([root], "tar")
        self.assertIn("left out Projet été/out: the link leads outside", self.log_text())
        self.assertIn("left out Projet été/pipe: not a regular file", self.log_text())

    def test_zip_forced_to_zip64_opens_with_zipfile_and_unzip(self):
        root = self.make_tricky_tree()
        run = self.start(self.offer([root], "zip", zip64_from=0))
        _, data = self.download(run)
        self.assertIn(b"PK\x06\x06", data)  # the zip64 end of central directory
        self.assertEqual(read_archive(data, "zip"), self.expected_tree(root, "zip"))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("Projet été/sub/deeper/big.bin")
            self.assertEqual(info.extract_version, 45)
        command = require_tool("unzip")
        path = self.make_file("zip64.zip", data)
        result = subprocess.run([command, "-t", path], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        self.assertEqual(result.returncode, 0, result.stdout)

    @unittest.skipUnless(os.environ.get("WOOF_TEST_BIG") == "1", "set WOOF_TEST_BIG=1")
    def test_zip_of_a_member_past_4_gib_opens_with_zipfile(self):
        root = os.path.join(self.tmp, "big")
        os.makedirs(root)
        with open(os.path.join(root, "a.mp4"), "wb") as handle:
            handle.truncate((4 << 30) + (512 << 20))
        self.make_file("z.txt", b"after the big one", root)
        body = self.offer([root], "zip").open()
        path = os.path.join(self.tmp, "big.zip")
        with open(path, "wb") as handle:
            sink = SparseFileSink(handle)
            body.write(sink, 0, None)
            handle.truncate(handle.tell())
        with zipfile.ZipFile(path) as archive:
            self.assertEqual(archive.getinfo("big/a.mp4").file_size, (4 << 30) + (512 << 20))
            self.assertGreater(archive.getinfo("big/z.txt").header_offset, 4 << 30)
            self.assertEqual(archive.read("big/z.txt"), b"after the big one")


class SparseFileSink:
    """A ResponseSink stand-in that writes to a file, seeking over zeros."""

    def __init__(self, handle):
        self.handle = handle
        self.sent = 0

    def write(self, data):
        data = bytes(data)
        if data.count(0) == len(data):
            self.handle.seek(len(data), os.SEEK_CUR)
        else:
            self.handle.write(data)
        self.sent += len(data)

    def flush(self):
        pass


class TarHeaderTests(unittest.TestCase):

    def entry(self, name, kind="file", size=0, mtime=OLD_MTIME, mode=0o644, target=""):
        return woof.ArchiveEntry(name, kind, size, mtime * 10 ** 9, mode, 0, 0, target)

    def test_plain_headers_read_back_as_written(self):
        for entry, name in (
                (self.entry("a/b.txt", size=5), "a/b.txt"),
                (self.entry("x" * 100, size=8 ** 11 - 1, mode=0o4755), "x" * 100),
                (self.entry("folder", "folder", mode=0o700), "folder"),
                (self.entry("in", "link", target="../a.txt", mode=0o777), "in")):
            with self.subTest(name=entry.name[:20]):
                header = woof.tar_header(entry, entry.size, entry.mtime_ns)
                self.assertEqual(len(header), 512)
                info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
                self.assertEqual((info.name, info.size, info.mtime, info.mode, info.linkname,
                                  info.type),
                                 (name, entry.size, OLD_MTIME, entry.mode, entry.target,
                                  woof.TAR_TYPES[entry.kind]))

    def test_what_ustar_cannot_hold_gets_a_pax_record(self):
        for entry in (self.entry("y" * 101), self.entry("Projet été"),
                      self.entry("big", size=8 ** 11), self.entry("old", mtime=-1),
                      self.entry("l", "link", target="t" * 101),
                      self.entry("bytes\udcff", size=3)):
            with self.subTest(name=entry.name[:20]):
                header = woof.tar_header(entry, entry.size, entry.mtime_ns)
                self.assertGreater(len(header), 512)
                self.assertEqual(header[156:157], tarfile.XHDTYPE)


class ArchiveOfferTests(ArchiveTestCase):

    def test_several_paths_make_one_archive_named_after_the_first(self):
        first = self.make_file("a.pdf", b"%PDF")
        second = self.make_file("b.txt", b"bee")
        folder = os.path.dirname(self.make_file(os.path.join("photos", "p.png"), b"png"))
        offer = self.offer([first, second, folder], "zip")
        self.assertEqual(offer.name, "a-and-2-more.zip")
        run = self.start(offer)
        _, data = self.download(run)
        self.assertEqual(read_archive(data, "zip"), {"a.pdf": b"%PDF", "b.txt": b"bee",
                                                     "photos": "dir", "photos/p.png": b"png"})

    def test_two_paths_with_the_same_name_are_refused(self):
        one = self.make_file(os.path.join("x", "same.txt"))
        two = self.make_file(os.path.join("y", "same.txt"))
        with self.assertRaisesRegex(woof.WoofError, "both be same.txt"):
            self.offer([one, two], "gz")

    def test_command_line_offers_folders_as_archives_and_a_file_as_itself(self):
        root = self.make_tricky_tree()
        parser = woof.build_parser()
        log = woof.Log(stream=self.log_stream)
        offer = woof.build_offer(parser.parse_args([root]), None, "gz", log)
        self.assertEqual(offer.name, "Projet été.tar.gz")
        offer = woof.build_offer(parser.parse_args([os.path.join(root, "a.txt")]), None, "zip")
        self.assertIsInstance(offer, woof.FileOffer)

    def test_a_format_flag_packs_a_single_file_and_names_get_the_extension(self):
        root = self.make_tricky_tree()
        single = os.path.join(root, "a.txt")
        parser = woof.build_parser({"compression": "zip"})
        table = [([single], woof.FileOffer, "a.txt"),
                 (["-Z", single], woof.ArchiveOffer, "a.txt.zip"),
                 (["-u", single], woof.ArchiveOffer, "a.txt.tar"),
                 (["-Z", "--name", "mine", single], woof.ArchiveOffer, "mine.zip"),
                 (["--name", "mine", root], woof.ArchiveOffer, "mine.zip"),
                 (["-z", "--name", "mine.tgz", root], woof.ArchiveOffer, "mine.tgz"),
                 (["-j", "--name", "Mine.TAR.BZ2", root], woof.ArchiveOffer, "Mine.TAR.BZ2"),
                 (["-u", "--name", "mine.zip", root], woof.ArchiveOffer, "mine.zip.tar"),
                 (["--name", "mine", single], woof.FileOffer, "mine")]
        for argv, kind, name in table:
            with self.subTest(argv=argv):
                args = woof.parse_command_line(parser, argv)
                settings = woof.settings_from(args)
                offer = woof.build_offer(args, None, settings.compression,
                                         woof.Log(stream=self.log_stream))
                self.assertIsInstance(offer, kind)
                self.assertEqual(offer.name, name)

    def test_a_single_file_with_Z_arrives_inside_a_zip(self):
        data = os.urandom(5000)
        path = self.make_file("notes.txt", data)
        child = WoofProcess(self, ["-Z", "-i", "127.0.0.1", "-p", "0", path])
        self.assertTrue(child.url.endswith("/notes.txt.zip"), child.url)
        with urllib.request.urlopen(child.url, timeout=DEADLINE) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
        self.assertEqual(archive.namelist(), ["notes.txt"])
        self.assertEqual(archive.read("notes.txt"), data)
        self.assertEqual(child.finish()[0], 0)

    def test_a_missing_folder_is_an_error_before_serving(self):
        missing = os.path.join(self.tmp, "nowhere")
        error = io.StringIO()
        with contextlib.redirect_stderr(error):
            code = woof.main(["-p", "0", "-i", "127.0.0.1", missing, self.tmp],
                             config_paths=())
        self.assertEqual(code, 1)
        self.assertIn("woof: error: cannot read", error.getvalue())

    def test_a_file_that_vanishes_before_its_turn_keeps_every_archive_valid(self):
        for compression in ARCHIVE_FORMATS:
            with self.subTest(compression=compression):
                root = os.path.join(self.tmp, compression)
                self.make_file("a.txt", b"kept", root)
                gone = self.make_file("b.txt", b"will vanish", root)
                self.make_file("c.txt", b"kept too", root)
                body = self.offer([root], compression).open()
                os.remove(gone)
                data = self.body_bytes(body)
                members = read_archive(data, compression)
                self.assertEqual(members[compression + "/c.txt"], b"kept too")
                if compression == "tar":
                    self.assertEqual(len(data), body.size)
                    self.assertEqual(members[compression + "/b.txt"], bytes(11))
                else:
                    self.assertNotIn(compression + "/b.txt", members)
                self.assertIn("b.txt", self.log_text())

    def test_a_file_that_shrinks_or_is_replaced_keeps_the_plain_tar_exact(self):
        root = os.path.join(self.tmp, "tree")
        shrinking = self.make_file("a.bin", b"x" * 100000, root)
        replaced = self.make_file("b.txt", b"original", root)
        self.make_file("c.txt", b"last", root)
        body = self.offer([root], "tar").open()
        with open(shrinking, "r+b") as handle:
            handle.truncate(1000)
        self.make_file("elsewhere", b"SECRET-OUTSIDE")
        if SYMLINKS:
            os.remove(replaced)
            os.symlink(os.path.join(self.tmp, "elsewhere"), replaced)
        else:  # made while b.txt exists, so that it cannot reuse b.txt's inode
            os.replace(self.make_file("b.new", b"SECRET-OUTSIDE", root), replaced)
        data = self.body_bytes(body)
        self.assertEqual(len(data), body.size)
        members = read_archive(data, "tar")
        self.assertEqual(members["tree/a.bin"], b"x" * 1000 + bytes(99000))
        self.assertEqual(members["tree/b.txt"], bytes(8))
        self.assertEqual(members["tree/c.txt"], b"last")
        self.assertNotIn(b"SECRET-OUTSIDE", data)
        self.assertIn("a.bin ended early", self.log_text())

    def test_a_part_of_a_plain_tar_never_stands_zeros_in_for_a_file_gone(self):
        for size, label in ((1000, "small"), (300000, "large")):
            for what in ("vanished", "shrank"):
                with self.subTest(size=label, change=what):
                    root = os.path.join(self.tmp, label + what, "tree")
                    path = self.make_file("a.bin", b"x" * size, root)
                    self.make_file("b.txt", b"last", root)
                    body = self.offer([root], "tar").open()
                    if what == "vanished":
                        os.remove(path)
                    else:
                        status = os.stat(path)
                        os.truncate(path, size // 2)
                        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
                    with self.assertRaises(woof.FileChanged):
                        self.body_bytes(body, 0, body.size - 1)
                    whole = read_archive(self.body_bytes(body), "tar")  # padded, as promised
                    self.assertEqual(len(whole["tree/a.bin"]), size)

    def test_aborted_archive_download_is_not_counted_and_woof_serves_on(self):
        root = os.path.join(self.tmp, "tree")
        self.make_file("random.bin", os.urandom(8 << 20), root)
        run = self.start(self.offer([root], "gz"))
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as raw:
            raw.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % run.server.offer_path.encode())
            raw.recv(4096)
        wait_until(lambda: "aborted" in self.log_text(), message="the abort to be logged")
        self.assertFalse(run.done())
        _, data = self.download(run)
        self.assertEqual(len(read_archive(data, "gz")["tree/random.bin"]), 8 << 20)
        wait_until(run.done, message="woof to finish")
        self.assertIsNone(run.error)


@unittest.skipUnless(hasattr(os, "seteuid"), "needs POSIX user ids")
@unittest.skipUnless(SYMLINKS and os.name != "nt", "needs symbolic links")
class SwappedPathTests(ArchiveTestCase):
    """What the user named is resolved once; nothing swapped in later goes out."""

    def test_a_folder_swapped_for_a_link_after_start_is_refused(self):
        self.make_file(os.path.join("private", "key"), b"TOPSECRET")
        shared = os.path.join(self.tmp, "share", "pub")
        self.make_file("readme.txt", b"public", shared)
        run = self.start(self.offer([shared], "tar"), count=5)
        os.rename(shared, shared + ".old")
        os.symlink(os.path.join(self.tmp, "private"), shared)
        response, data = self.request(run)
        self.assertEqual(response.status, 410)
        self.assertNotIn(b"TOPSECRET", data)

    def test_a_link_named_on_the_command_line_sends_its_target(self):
        target = self.make_file("target.txt", b"the target\n")
        link = os.path.join(self.tmp, "named-link.txt")
        os.symlink(target, link)
        other = self.make_file("other.txt", b"other\n")
        for compression in ("tar", "gz", "zip"):
            with self.subTest(compression=compression):
                body = self.offer([link, other], compression).open()
                data = self.body_bytes(body)
                self.assertEqual(read_archive(data, compression)["named-link.txt"], b"the target\n")

    def test_a_subfolder_swapped_for_a_link_is_never_entered(self):
        outside = os.path.join(self.tmp, "outside")
        self.make_file("key", b"TOPSECRET", outside)
        tree = os.path.join(self.tmp, "tree")
        sub = os.path.join(tree, "sub")
        os.makedirs(sub)
        status = os.lstat(sub)
        top = woof.OpenFolder(tree, (os.stat(tree).st_dev, os.stat(tree).st_ino))
        self.addCleanup(top.close)
        os.rmdir(sub)
        os.symlink(outside, sub)
        # What the walk listed was the real folder; what stands there now is a
        # link, even one to a folder of the same identity, and is refused.
        for identity in ((status.st_dev, status.st_ino),
                         (os.stat(outside).st_dev, os.stat(outside).st_ino)):
            with self.subTest(identity=identity):
                with self.assertRaises((OSError, woof.FileChanged)):
                    woof.OpenFolder(sub, identity, top)

    def test_linux_walks_folders_through_descriptors(self):
        if not woof.WALK_BY_DESCRIPTOR:
            self.skipTest("this system walks folders by path")
        self.assertTrue(woof.WALK_BY_DESCRIPTOR)

    def test_without_descriptors_the_walk_goes_by_path_and_still_sends_everything(self):
        root = self.make_tricky_tree()
        with mock.patch("woof.WALK_BY_DESCRIPTOR", False):
            for compression in ARCHIVE_FORMATS:
                with self.subTest(compression=compression):
                    run = self.start(self.offer([root], compression))
                    _, data = self.download(run)
                    self.assertEqual(read_archive(data, compression),
                                     self.expected_tree(root, compression))
                    self.assertNotIn(b"SECRET-OUTSIDE", unpacked_stream(data, compression))


@unittest.skipUnless(woof.WALK_BY_DESCRIPTOR, "only a walk by descriptor reaches past PATH_MAX")
class DeepTreeTests(ArchiveTestCase):

    def make_deep_tree(self, depth_bytes=5000):
        """A folder chain longer than PATH_MAX (4096 on Linux), made a level at a time.

        Returns (root, the archive names of the folders and of the deep files).
        """
        root = os.path.join(self.tmp, "deep")
        os.mkdir(root)
        level = "d" * 200
        names = ["deep"]  # in the archive, "/"-separated
        descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            while len("/".join(names)) < depth_bytes:
                os.mkdir(level, dir_fd=descriptor)
                inner = os.open(level, os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
                os.close(descriptor)
                descriptor = inner
                names.append(level)
            files = {}
            for name, data in (("bottom.bin", os.urandom(200000)), ("small.txt", b"at the bottom")):
                handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=descriptor)
                with os.fdopen(handle, "wb") as writer:
                    writer.write(data)
                files["/".join(names + [name])] = data
        finally:
            os.close(descriptor)
        folders = ["/".join(names[:count]) for count in range(1, len(names) + 1)]
        return root, folders, files

    def shortened(self, members):
        """Members with each folder level named D, so that a failure reads."""
        return {name.replace("d" * 200, "D"): value for name, value in members.items()}

    def test_files_deeper_than_path_max_are_sent_byte_exact_in_every_format(self):
        root, folders, files = self.make_deep_tree()
        self.assertGreater(min(len(name) for name in files), 4096)
        expected = dict.fromkeys(folders, "dir")
        expected.update(files)
        for compression in ARCHIVE_FORMATS:
            with self.subTest(compression=compression):
                run = self.start(self.offer([root], compression))
                _, data = self.download(run)
                self.assertEqual(self.shortened(read_archive(data, compression)),
                                 self.shortened(expected))
        self.assertEqual(self.log_text().count("left out"), 0, "files were left out")

    def test_a_resumed_plain_tar_sends_deep_files_from_any_offset(self):
        root, _, files = self.make_deep_tree()
        run = self.start(self.offer([root], "tar"), count=2)
        response, whole = self.download(run)
        etag = response.getheader("ETag")
        start = whole.index(files[min(files)][:64]) + 1000
        response, data = self.request(run, headers={"Range": "bytes=%d-" % start,
                                                    "If-Range": etag})
        self.assert_response(response, data, 206, body=whole[start:])


@unittest.skipIf(os.name == "nt", "needs a backslash in a file name")
class ZipNameTests(ArchiveTestCase):

    def test_zip_names_carry_no_backslash_that_windows_would_follow(self):
        folder = os.path.join(self.tmp, "odd")
        self.make_file("..\\..\\evil.txt", b"evil", folder)
        data = self.body_bytes(self.offer([folder], "zip").open())
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            self.assertEqual(archive.namelist(), ["odd/", "odd/.._.._evil.txt"])


@unittest.skipIf(os.name == "nt", "Windows: chmod sets only the read-only flag, and "
                                    "nothing here can make a file unreadable")
class UnreadableArchiveTests(ArchiveTestCase):
    """Permissions do not stop root: as root, woof runs as nobody for these tests."""

    def run_as_unprivileged(self):
        if os.geteuid() != 0:
            return
        # Python's own modules may lie where nobody cannot read (/root): the
        # codecs of host names and of zip names are imported first.
        for codec in ("idna", "cp437"):
            codecs.lookup(codec)
        os.chmod(self.tmp, 0o755)
        os.seteuid(NOBODY)
        self.addCleanup(os.seteuid, 0)

    def test_a_file_that_cannot_be_read_is_left_out_and_logged(self):
        for compression in ARCHIVE_FORMATS:
            with self.subTest(compression=compression):
                root = os.path.join(self.tmp, compression)
                self.make_file("readable.txt", b"kept", root)
                os.chmod(self.make_file("private.txt", b"PRIVATE", root), 0)
                os.chmod(root, 0o755)
        self.run_as_unprivileged()
        for compression in ARCHIVE_FORMATS:
            with self.subTest(compression=compression):
                run = self.start(self.offer([os.path.join(self.tmp, compression)], compression))
                _, data = self.download(run)
                members = read_archive(data, compression)
                self.assertEqual(members, {compression: "dir",
                                           compression + "/readable.txt": b"kept"})
                self.assertIn("left out %s/private.txt: permission denied" % compression,
                              self.log_text())

    @unittest.skipUnless(os.name != "nt" and os.path.isdir("/proc/1") and SYMLINKS,
                         "needs Linux's /proc")
    def test_a_link_woof_may_not_resolve_is_left_out_and_the_rest_sent(self):
        # As in `woof.py /`: /proc/1/cwd is a link that only those who may
        # trace process 1 can read, which os.path.realpath did not expect.
        root = os.path.join(self.tmp, "tree")
        self.make_file("a.txt", b"sent", root)
        os.symlink("/proc/1/cwd", os.path.join(root, "init-cwd"))
        os.chmod(root, 0o755)
        self.run_as_unprivileged()
        try:
            os.readlink("/proc/1/cwd")
        except PermissionError:
            pass
        else:
            self.skipTest("this user may read /proc/1/cwd")
        for compression in ("tar", "gz", "zip"):
            with self.subTest(compression=compression):
                run = self.start(self.offer([root], compression))
                _, data = self.download(run)
                self.assertEqual(read_archive(data, compression),
                                 {"tree": "dir", "tree/a.txt": b"sent"})
                self.assertIn("left out tree/init-cwd", self.log_text())

    def test_a_folder_that_cannot_be_read_is_an_error_before_serving(self):
        folder = os.path.join(self.tmp, "closed")
        self.make_file("inside.txt", b"x", folder)
        os.chmod(folder, 0)
        self.run_as_unprivileged()
        error = io.StringIO()
        with contextlib.redirect_stderr(error):
            code = woof.main(["-p", "0", "-i", "127.0.0.1", folder], config_paths=())
        self.assertEqual(code, 1)
        self.assertIn("woof: error: cannot read the folder", error.getvalue())


class ResumableTarTests(ArchiveTestCase):

    def test_plain_tar_has_an_exact_size_and_serves_any_span(self):
        root = self.make_tricky_tree()
        run = self.start(self.offer([root], "tar"), count=3)
        response, whole = self.request(run, method="HEAD")
        size = int(response.getheader("Content-Length"))
        etag = response.getheader("ETag")
        _, whole = self.download(run)
        self.assertEqual(len(whole), size)
        for start, stop in ((0, 1), (511, 1537), (1000, size), (size - 5, size)):
            with self.subTest(start=start):
                response, data = self.request(run, headers={
                    "Range": "bytes=%d-%d" % (start, stop - 1), "If-Range": etag})
                self.assert_response(response, data, 206, body=whole[start:stop])

    def test_curl_resumes_a_plain_tar_and_that_counts_as_one_download(self):
        curl = require_tool("curl")
        root = self.make_tricky_tree()
        run = self.start(self.offer([root], "tar"))
        path = os.path.join(self.tmp, "resumed.tar")
        response = self.make_partial(run, path, 3000)
        size = int(response.getheader("Content-Range").rsplit("/", 1)[1])
        self.assertFalse(run.done())
        result = subprocess.run([curl, "-sS", "-C", "-", "-o", path, self.url(run)],
                                stderr=subprocess.PIPE)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(os.path.getsize(path), size)
        with open(path, "rb") as handle:
            self.assertEqual(read_archive(handle.read(), "tar"), self.expected_tree(root, "tar"))
        wait_until(run.done, message="woof to count the resumed download")

    def test_resuming_after_the_folder_changed_fails_cleanly(self):
        root = self.make_tricky_tree()
        self.check_resume_after_a_change_is_refused(root, self.offer([root], "tar"), "tar")

    def change(self, root):
        """Add a file and touch another: the folder is in a new state."""
        self.make_file("added.txt", b"added later", root)
        os.utime(os.path.join(root, "zero"), (OLD_MTIME, OLD_MTIME))

    def test_a_change_before_anyone_downloads_leaves_curl_resuming(self):
        curl = require_tool("curl")
        root = self.make_tricky_tree()
        run = self.start(self.offer([root], "tar"))
        self.change(root)
        path = os.path.join(self.tmp, "partial.tar")
        self.make_partial(run, path, 3000)
        result = subprocess.run([curl, "-sS", "-C", "-", "-o", path, self.url(run)],
                                stderr=subprocess.PIPE)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(path, "rb") as handle:
            self.assertEqual(read_archive(handle.read(), "tar"), self.expected_tree(root, "tar"))
        wait_until(run.done, message="woof to count the resumed download")

    def test_aria2c_splits_a_plain_tar_of_a_folder_changed_after_start(self):
        aria2c = require_tool("aria2c")
        root = self.make_tricky_tree()
        self.make_file("large.bin", os.urandom(6 << 20), root)
        run = self.start(self.offer([root], "tar"))
        self.change(root)
        folder = os.path.join(self.tmp, "client")
        os.mkdir(folder)
        subprocess.run([aria2c, "-q", "-x4", "-s4", "-k1M", "-o", "got.tar", self.url(run)],
                       cwd=folder, check=True, timeout=DEADLINE, stdout=subprocess.DEVNULL)
        run.wait()
        with open(os.path.join(folder, "got.tar"), "rb") as handle:
            self.assertEqual(read_archive(handle.read(), "tar"), self.expected_tree(root, "tar"))
        self.assertNotIn('" 409 ', self.log_text())
        self.assertEqual(self.log_text().count("download 1 of 1 complete"), 1)

    @unittest.skipUnless(sys.platform.startswith("linux"), "Linux routes all of 127/8 to lo")
    def test_a_resume_is_refused_only_to_a_client_whose_part_came_from_another_state(self):
        root = self.make_tricky_tree()
        run = self.start(self.offer([root], "tar"), count=2)

        def fetch(host, ranges, **headers):
            connection = http.client.HTTPConnection("127.0.0.1", run.server.port,
                                                    timeout=DEADLINE, source_address=(host, 0))
            headers["Range"] = "bytes=" + ranges
            with contextlib.closing(connection):
                return self.request(run, headers=headers, connection=connection)

        response, first = fetch("127.0.0.2", "0-2999")
        self.assert_response(response, first, 206)
        self.change(root)
        for host in ("127.0.0.2", "127.0.0.3"):
            # Its part came from the folder before, or it may have: woof
            # sent that state to someone, and does not know this client.
            with self.subTest(host=host):
                response, data = fetch(host, "3000-")
                self.assert_response(response, data, 409)
        # From the start again, it holds nothing that could mismatch.
        response, whole = fetch("127.0.0.2", "0-")
        self.assertIn(response.status, (200, 206))
        etag = response.getheader("ETag")
        self.assertEqual(read_archive(whole, "tar"), self.expected_tree(root, "tar"))
        wait_until(lambda: "download 1 of 2 complete" in self.log_text(),
                   message="the whole archive to count")
        # Its part now comes from the folder as it is: resuming it is fine.
        response, data = fetch("127.0.0.2", "0-2999", **{"If-Range": etag})
        self.assert_response(response, data, 206, body=whole[:3000])
        response, data = fetch("127.0.0.2", "3000-")
        self.assert_response(response, data, 206, body=whole[3000:])
        run.wait()


class StoredZipTests(ArchiveTestCase):
    """-Z --store: a zip of known size, resumable like the plain tar."""

    def test_a_file_that_shrinks_while_sent_gets_the_crc_of_what_went_out(self):
        root = os.path.join(self.tmp, "tree")
        original = os.urandom(200000)
        path = self.make_file("a.bin", original, root)
        self.make_file("b.txt", b"last", root)
        body = self.stored(root).open()

        class ShrinkingSink(woof.ResponseSink):
            """Cuts a.bin to half once its header is written and before its data."""
            cut = False

            def flush(self):
                if not self.cut and b"a.bin" in self.pending:
                    ShrinkingSink.cut = True
                    os.truncate(path, 100000)
                super().flush()

        manifest = body.layout.manifest
        for cache in ("no CRC found yet", "its CRC found by a download before"):
            with self.subTest(cache=cache):
                ShrinkingSink.cut = False
                with open(path, "wb") as handle:
                    handle.write(original)
                os.utime(path, ns=(manifest.mtimes[1],) * 2)  # as listed
                body = self.cold_copy(body)
                if cache != "no CRC found yet":
                    self.body_bytes(body)
                    body = woof.StoredZipBody(manifest, body.layout, body.warnings, body.zlib)
                data = self.body_bytes(body, sink_class=ShrinkingSink)
                self.assertTrue(ShrinkingSink.cut)
                self.assertEqual(len(data), body.size)
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    self.assertIsNone(archive.testzip())
                    self.assertEqual(archive.read("tree/a.bin"),
                                     original[:100000] + bytes(100000))

    def stored(self, root, **options):
        return self.offer([root], "zip", store=True, **options)

    def cold_copy(self, body):
        """A body of the same manifest that has found no CRC yet."""
        layout = body.layout
        fresh = woof.StoredZipLayout(layout.manifest, layout.zip64_from)
        return woof.StoredZipBody(layout.manifest, fresh, body.warnings, body.zlib)

    def boundaries(self, layout):
        """Every offset where one record of the zip ends and another starts."""
        offsets = {0, layout.directory_start, layout.size - len(layout.end), layout.size}
        for index, entry in enumerate(layout.entries):
            start = layout.starts[index]
            header_end = start + len(layout.local_header(entry))
            data_end = header_end + entry.size
            offsets.update((start, header_end, data_end, data_end + layout.descriptor_size(entry),
                            layout.directory_start + layout.records[index]))
        return sorted(offsets)

    def test_a_stored_zip_has_an_exact_length_and_an_etag_and_stores_every_member(self):
        root = self.make_tricky_tree()
        run = self.start(self.stored(root), count=2)
        response, _ = self.request(run, method="HEAD")
        size = int(response.getheader("Content-Length"))
        etag = response.getheader("ETag")
        self.assertRegex(etag, r'^"zip-[0-9a-f]{32}"$')
        response, data = self.download(run)
        self.assertEqual(int(response.getheader("Content-Length")), len(data))
        self.assertEqual((len(data), response.getheader("ETag")), (size, etag))
        self.assertIsNone(response.getheader("Transfer-Encoding"))
        self.assertEqual(response.getheader("Accept-Ranges"), "bytes")
        self.assertEqual(read_archive(data, "zip"), self.expected_tree(root, "zip"))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            self.assertEqual({info.compress_type for info in archive.infolist()},
                             {zipfile.ZIP_STORED})
            text = archive.getinfo("Projet été/a.txt")
            self.assertTrue(text.flag_bits & 0x800)
            self.assertEqual(text.external_attr >> 16 & 0o777, A_MODE)
        _, again = self.download(run)
        self.assertTrue(again == data, "a second download differs from the first")

    def test_unzip_7z_and_bsdtar_unpack_the_folder_as_it_is(self):
        root = self.make_tricky_tree()
        expected = self.expected_tree(root, "zip")
        for zip64_from in (woof.ZIP32_MAX, 1000, 0):
            data = self.body_bytes(self.stored(root, zip64_from=zip64_from).open())
            path = self.make_file("stored-%d.zip" % zip64_from, data)
            for tool, arguments in (("unzip", ["-q", path, "-d"]), ("7z", ["x", "-y", path, "-o"]),
                                    ("bsdtar", ["-xf", path, "-C"])):
                with self.subTest(zip64_from=zip64_from, tool=tool):
                    command = require_tool(tool)
                    folder = os.path.join(self.tmp, "%s-%d" % (tool, zip64_from))
                    os.mkdir(folder)
                    if tool == "7z":
                        arguments = arguments[:-1] + ["-o" + folder]
                    else:
                        arguments = arguments + [folder]
                    result = subprocess.run([command] + arguments, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT,
                                            env=dict(os.environ, LC_ALL="C.UTF-8"))
                    self.assertEqual(result.returncode, 0, result.stdout)
                    self.assertEqual(tree_of(folder, "dir"), expected)
            with self.subTest(zip64_from=zip64_from, tool="unzip -t"):
                result = subprocess.run([require_tool("unzip"), "-t", path],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                self.assertEqual(result.returncode, 0, result.stdout)

    def test_small_zip64_from_makes_zip64_records(self):
        root = self.make_tricky_tree()
        for zip64_from, small_version in ((woof.ZIP32_MAX, 20), (1000, 20), (0, 45)):
            with self.subTest(zip64_from=zip64_from):
                data = self.body_bytes(self.stored(root, zip64_from=zip64_from).open())
                # The zip64 end of central directory, as the directory starts past 1000.
                self.assertEqual(b"PK\x06\x06" in data, zip64_from != woof.ZIP32_MAX)
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    self.assertEqual(archive.getinfo("Projet été/sub/deeper/big.bin")
                                     .extract_version, 45 if zip64_from < 200000 else 20)
                    self.assertEqual(archive.getinfo("Projet été/a.txt").extract_version,
                                     small_version)
                self.assertEqual(read_archive(data, "zip"), self.expected_tree(root, "zip"))

    def test_every_span_is_that_slice_of_the_whole_with_crcs_known_or_not(self):
        root = self.make_tricky_tree()
        for zip64_from in (woof.ZIP32_MAX, 1000, 0):
            body = self.stored(root, zip64_from=zip64_from).open()
            whole = self.body_bytes(body)
            self.assertEqual(len(whole), body.size)
            offsets = self.boundaries(body.layout)
            self.assertGreater(len(offsets), 25)
            spans = set()
            for offset in offsets:
                spans.update(((max(offset - 1, 0), min(offset + 1, body.size)),
                              (offset, body.size), (0, max(offset, 1)),
                              (max(offset - 7, 0), min(offset + 30, body.size))))
            for start, stop in sorted(spans):
                for cache in ("warm", "cold"):
                    with self.subTest(zip64_from=zip64_from, span=(start, stop), cache=cache):
                        part = body if cache == "warm" else self.cold_copy(body)
                        data = self.body_bytes(part, start, stop)
                        self.assertTrue(data == whole[start:stop],
                                        "span %d-%d differs" % (start, stop))

    def test_without_sendfile_as_over_tls_the_zip_is_the_same(self):
        root = self.make_tricky_tree()
        self.make_file("large.bin", os.urandom(3 << 20), root)
        body = self.stored(root).open()
        whole = self.body_bytes(self.cold_copy(body))
        self.assertEqual(read_archive(whole, "zip"), self.expected_tree(root, "zip"))
        for cache in ("cold", "warm"):
            with self.subTest(cache=cache):
                part = self.cold_copy(body) if cache == "cold" else body
                data = self.body_bytes(part, use_sendfile=False)
                self.assertTrue(data == whole, "the zip sent without sendfile differs")

    def test_ranges_over_http_are_slices_of_the_whole(self):
        root = self.make_tricky_tree()
        run = self.start(self.stored(root), count=2)
        response, whole = self.download(run)
        etag, size = response.getheader("ETag"), len(whole)
        for start, stop in ((0, 1), (29, 3000), (1000, size), (size - 22, size),
                            (size - 100, size - 10)):
            with self.subTest(start=start):
                response, data = self.request(run, headers={
                    "Range": "bytes=%d-%d" % (start, stop - 1), "If-Range": etag})
                self.assert_response(response, data, 206, body=whole[start:stop])
                self.assertEqual(response.getheader("Content-Range"),
                                 "bytes %d-%d/%d" % (start, stop - 1, size))

    def test_curl_resumes_a_stored_zip_of_a_woof_run_with_c_1_and_woof_exits(self):
        curl = require_tool("curl")
        root = self.make_tricky_tree()
        expected = self.body_bytes(self.stored(root).open())
        woof_run = WoofProcess(self, ["-Z", "--store", "-c", "1", "-i", "127.0.0.1", "-p", "0",
                                      root])
        path = os.path.join(self.tmp, "resumed.zip")
        cut = len(expected) // 2  # inside big.bin
        result = subprocess.run([curl, "-sS", "-r", "0-%d" % (cut - 1), "-o", path, woof_run.url],
                                stderr=subprocess.PIPE)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIsNone(woof_run.process.poll())
        result = subprocess.run([curl, "-sS", "-C", "-", "-o", path, woof_run.url],
                                stderr=subprocess.PIPE)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(path, "rb") as handle:
            self.assertTrue(handle.read() == expected, "the resumed zip differs")
        status, stderr = woof_run.finish()
        self.assertEqual(status, 0, stderr)
        self.assertEqual(stderr.count("download 1 of 1 complete"), 1, stderr)

    def test_aria2c_splits_a_stored_zip_byte_exact_and_counts_it_once(self):
        aria2c = require_tool("aria2c")
        root = self.make_tricky_tree()
        self.make_file("large.bin", os.urandom(6 << 20), root)
        offer = self.stored(root)
        expected = self.body_bytes(offer.open())
        run = self.start(offer)
        folder = os.path.join(self.tmp, "client")
        os.mkdir(folder)
        subprocess.run([aria2c, "-q", "-x4", "-s4", "-k1M", "-o", "got.zip", self.url(run)],
                       cwd=folder, check=True, timeout=DEADLINE, stdout=subprocess.DEVNULL)
        run.wait()
        with open(os.path.join(folder, "got.zip"), "rb") as handle:
            got = handle.read()
        self.assertTrue(got == expected, "aria2c's zip differs")
        self.assertEqual(read_archive(got, "zip"), self.expected_tree(root, "zip"))
        self.assertNotIn('" 409 ', self.log_text())
        self.assertEqual(self.log_text().count("download 1 of 1 complete"), 1)

    def test_resuming_after_the_folder_changed_is_refused_not_spliced(self):
        root = self.make_tricky_tree()
        self.check_resume_after_a_change_is_refused(root, self.stored(root), "zip")

    def test_a_part_that_meets_a_file_changed_since_listed_is_cut_short(self):
        root = self.make_tricky_tree()
        body = self.stored(root).open()
        whole = self.body_bytes(body)
        big = os.path.join(root, "sub", "deeper", "big.bin")
        with open(big, "ab") as handle:
            handle.write(b"grown")
        layout = body.layout
        index = [entry.name for entry in layout.entries].index("Projet été/sub/deeper/big.bin")
        data_start = layout.starts[index] + len(layout.local_header(layout.entries[index]))
        for name, span in (("its data", (data_start + 10, data_start + 20)),
                           ("the central directory", (layout.directory_start, layout.size))):
            with self.subTest(part=name):
                with self.assertRaises(woof.FileChanged):
                    self.body_bytes(self.cold_copy(body), *span)
        # A whole archive takes it as listed (cut to its size), and says so.
        data = self.body_bytes(self.cold_copy(body))
        self.assertEqual(len(data), len(whole))
        self.assertIn("changed size while offered: sent as listed", self.log_text())
        self.assertEqual(read_archive(data, "zip"), read_archive(whole, "zip"))

    def test_crcs_found_by_one_part_serve_the_next_without_reading_again(self):
        root = self.make_tricky_tree()
        offer = self.stored(root)
        whole = self.body_bytes(self.cold_copy(offer.open()))
        body = offer.open()
        layout = body.layout
        files = [index for index, entry in enumerate(layout.entries)
                 if entry.kind == woof.FILE and entry.size]
        self.assertEqual([layout.known_crc(index) for index in files], [None] * len(files))
        self.body_bytes(body, 0, layout.directory_start)
        self.assertNotIn(None, [layout.known_crc(index) for index in files])
        # The files are gone: the directory can only come from the CRCs kept.
        shutil.rmtree(os.path.join(root, "sub"))
        os.remove(os.path.join(root, "a.txt"))
        later = woof.StoredZipBody(layout.manifest, layout, body.warnings, body.zlib)
        data = self.body_bytes(later, layout.directory_start, layout.size)
        self.assertTrue(data == whole[layout.directory_start:], "the directory differs")

    def test_store_without_a_zip_format_is_a_usage_error(self):
        root = self.make_tricky_tree()
        config = self.make_file("woofrc", b"[main]\ncompressed = xz\n")
        for args, config_paths in ((["--store", root], ()), (["-z", "--store", root], ()),
                                   (["-u", "--store", root], ()), (["--store", root], (config,))):
            with self.subTest(args=args, config=bool(config_paths)):
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    status = woof.main(args, config_paths=config_paths)
                self.assertEqual(status, 2)
                self.assertEqual(stderr.getvalue(), "woof: error: --store makes a zip's members "
                                 "stored; give it with -Z (see --help)\n")

    def test_woofrc_store_applies_to_zips_only(self):
        root = self.make_tricky_tree()
        config = self.make_file("woofrc", b"[main]\ncompressed = zip\nstore = yes\n")
        self.assertEqual(woof.read_config([config]), {"compression": "zip", "store": True})
        parser = woof.build_parser(woof.read_config([config]))
        for args, compression, store in (([root], "zip", True), (["-Z", root], "zip", True),
                                         (["-z", root], "gz", False), (["-u", root], "tar", False)):
            with self.subTest(args=args):
                parsed = woof.parse_command_line(parser, args)
                woof.check_arguments(parser, parsed)
                settings = woof.settings_from(parsed)
                offer = woof.build_offer(parsed, None, settings.compression,
                                         woof.Log(stream=self.log_stream))
                self.assertEqual((offer.compression, offer.store), (compression, store))
                self.assertEqual(offer.open(sending_body=False).size is not None,
                                 store or compression == "tar")

    def test_a_whole_zip_pads_a_file_gone_since_listed_and_stays_valid(self):
        root = self.make_tricky_tree()
        body = self.stored(root).open()
        os.remove(os.path.join(root, "sub", ODD_NAME))
        data = self.body_bytes(body)
        self.assertEqual(len(data), body.size)
        self.assertEqual(read_archive(data, "zip")["Projet été/sub/" + ODD_NAME], bytes(9))
        self.assertIn("could not be read", self.log_text())


def resident_mib(pid):
    """A process's resident memory now, in MiB (Linux /proc)."""
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for process %d" % pid)


class IdleReader:
    """A client that asks for the offer, takes the head and one byte, then reads nothing."""

    def __init__(self, test, port, path):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        test.addCleanup(self.sock.close)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                          % (path.encode(), port))
        self.received = b""

    def take_head_and_a_byte(self):
        """Read the response head and at least one byte after it (blocking)."""
        while True:
            head_end = self.received.find(b"\r\n\r\n")
            if head_end >= 0 and len(self.received) > head_end + 4:
                return
            chunk = self.sock.recv(1 if head_end >= 0 else 1024)
            if not chunk:
                raise AssertionError("the connection closed after %r" % self.received)
            self.received += chunk

    def status(self):
        return int(self.received.split(b" ", 2)[1])


class ArchiveMemoryTests(ArchiveTestCase):
    """Clients that ask for an archive and read nothing hold little of woof's memory."""

    READERS = 24

    def test_idle_readers_of_compressed_archives_keep_woof_memory_bounded(self):
        if os.name == "nt" or not os.path.exists("/proc/self/status"):
            self.skipTest("needs Linux /proc to read woof's memory")
        folder = os.path.join(self.tmp, "album")
        self.make_file("a.bin", os.urandom(4 << 20), folder)
        self.make_file("b.txt", b"text " * 1000, folder)
        for flag in ("-z", "-Z"):
            with self.subTest(flag=flag):
                child = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", "-c", "1000", flag,
                                           folder])
                path = urllib.parse.urlsplit(child.url).path
                wait_until(lambda: resident_mib(child.process.pid) > 0)
                before = resident_mib(child.process.pid)
                readers = [IdleReader(self, child.port, path) for _ in range(self.READERS)]
                for reader in readers:
                    reader.take_head_and_a_byte()
                    self.assertEqual(reader.status(), 200)
                # Each stream has read and compressed its first file's data
                # before its first byte left: its buffers are all there.
                grown = resident_mib(child.process.pid) - before
                self.assertLess(grown, 32, "%d idle readers took %.0f MiB"
                                % (self.READERS, grown))
                for reader in readers:
                    reader.sock.close()
                child.close()

    def test_a_request_past_the_streams_compressing_at_once_waits_then_gets_503(self):
        folder = os.path.join(self.tmp, "album")
        content = os.urandom(4 << 20)
        self.make_file("a.bin", content, folder)
        with mock.patch.dict(woof.ARCHIVE_STREAMS_AT_ONCE, {"gz": 2}), \
                mock.patch.object(woof, "ARCHIVE_TURN_WAIT", 0.5):
            run = self.start(self.offer([folder], "gz"), count=0)
            port, path = run.server.port, run.server.offer_path
            readers = [IdleReader(self, port, path) for _ in range(2)]
            for reader in readers:
                reader.take_head_and_a_byte()
            response, data = self.request(run, "GET")
            self.assert_response(response, data, 503, {"Retry-After": "10"})
            response, _ = self.request(run, "HEAD")
            self.assertEqual(response.status, 200)  # a HEAD compresses nothing
            readers[0].sock.close()  # its stream fails and gives its turn back
            wait_until(lambda: "aborted" in self.log_text(), message="the stream to end")
            response, data = self.download(run)
        self.assertEqual(read_archive(data, "gz")["album/a.bin"], content)


class ParallelCompressionTests(ArchiveTestCase):
    """Archives compressed on every core hold exactly the plain tar's content,
    in streams every tool opens; what cannot shrink is stored, not deflated."""

    TOOLS = {"gz": [("gzip", "-t")], "bz2": [("bzip2", "-t")], "xz": [("xz", "-t")]}

    def make_block_tree(self):
        """Several MiB: text, random data with no telling extension, a .jpg,
        and the tree with everything that can go wrong."""
        root = self.make_tricky_tree()
        lines = b"".join(b"line %d of a text that deflate shrinks\n" % number
                         for number in range(60000))
        self.make_file("text.txt", lines, root)
        self.make_file("noise.dat", os.urandom(600000), root)
        self.make_file("camera.jpg", os.urandom(300000), root)
        # One random chunk over and over: only a block primed with the one
        # before it finds the chunk in its window.
        self.make_file("echo.txt", os.urandom(20000) * 50, root)
        return root

    def test_crc32_combine_joins_two_pieces_as_zlib_counts_the_whole(self):
        chance = random.Random(7)
        pieces = [b"", b"a", os.urandom(1), os.urandom(4), os.urandom(1000), os.urandom(65536),
                  bytes(3000), b"\xff" * 777] + [os.urandom(chance.randrange(1, 5000))
                                                 for _ in range(20)]
        for first in pieces:
            for second in pieces:
                expected = zlib.crc32(first + second)
                self.assertEqual(woof.crc32_combine(zlib.crc32(first), zlib.crc32(second),
                                                    len(second)), expected)
                operator = woof.crc32_shift_operator(len(second))
                self.assertEqual(woof.crc32_combine(zlib.crc32(first), zlib.crc32(second),
                                                    len(second), operator), expected)

    def test_a_zip_reads_as_a_stream_in_java(self):
        # Java's ZipInputStream (Android's too) reads a zip from its start, by
        # the local headers: it refuses a stored member whose sizes follow
        # its data.  `jar x` with the zip on its standard input reads so.
        jar = require_tool("jar")
        root = os.path.join(self.tmp, "for java")
        files = {"text.txt": b"text that shrinks\n" * 3000, "noise.dat": os.urandom(200000),
                 "small-noise.dat": os.urandom(3000), "photo.jpg": os.urandom(5000),
                 "big photo.jpg": os.urandom(100000), "empty.txt": b"",
                 "sub/note.txt": b"a note\n"}
        for name, data in files.items():
            self.make_file(name, data, root)
        path = self.make_file("download.zip", self.archive_bytes(root, "zip"))
        unpacked = os.path.join(self.tmp, "unpacked")
        os.mkdir(unpacked)
        with open(path, "rb") as archive:
            done = subprocess.run([jar, "x"], stdin=archive, cwd=unpacked,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=DEADLINE * 4)
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertEqual({name: data for name, data in tree_of(unpacked).items()
                          if isinstance(data, bytes)},
                         {"for java/" + name: data for name, data in files.items()})

    def archive_bytes(self, root, compression, pool=None):
        offer = self.offer([root], compression)
        body = offer.open()
        if pool is not None:
            body.pool = pool
        return self.body_bytes(body)

    def plain_tar(self, root):
        offer = self.offer([root], "tar")
        return self.body_bytes(offer.open())

    def check_with_tools(self, data, compression):
        path = self.make_file("download" + woof.ARCHIVE_EXTENSIONS[compression], data)
        for command in self.TOOLS[compression] + [("tar", "-tf"), ("bsdtar", "-tf"), ("7z", "t")]:
            with self.subTest(compression=compression, tool=command[0]):
                run_tool(self, require_tool(command[0]), *command[1:], path)
        with tarfile.open(path) as archive:
            archive.getmembers()

    def test_each_format_holds_the_plain_tar_and_every_tool_opens_it(self):
        root = self.make_block_tree()
        plain = self.plain_tar(root)
        for compression in ("gz", "bz2", "xz"):
            with self.subTest(compression=compression):
                run = self.start(self.offer([root], compression))
                _, data = self.download(run)
                self.assertEqual(unpacked_stream(data, compression), plain)
                self.assertEqual(read_archive(data, compression),
                                 self.expected_tree(root, compression))
                self.check_with_tools(data, compression)

    def test_the_serial_path_writes_the_same_bytes_as_the_cores(self):
        root = self.make_block_tree()
        for compression in ("gz", "xz"):
            with self.subTest(compression=compression):
                serial = self.archive_bytes(root, compression, woof.CompressionPool(1))
                parallel = self.archive_bytes(root, compression, woof.CompressionPool(3))
                self.assertEqual(parallel, serial)

    def test_gzip_is_one_member_as_small_as_zlib_makes_it(self):
        root = self.make_block_tree()
        data = self.archive_bytes(root, "gz")
        plain = self.plain_tar(root)
        whole = zlib.compressobj(woof.GZIP_LEVEL, zlib.DEFLATED, 31)
        reference = whole.compress(plain) + whole.flush()
        self.assertLess(len(data), 1.01 * len(reference) + 4096)
        unpacker = zlib.decompressobj(31)
        self.assertEqual(unpacker.decompress(data), plain)
        self.assertTrue(unpacker.eof)
        self.assertEqual(unpacker.unused_data, b"")  # one member, nothing after it
        # The echoed chunk is deflated once, not once a block.
        echo = self.make_file("echo.txt", os.urandom(20000) * 50, os.path.join(self.tmp, "e"))
        self.assertLess(len(self.archive_bytes(os.path.dirname(echo), "gz")), 60000)

    def test_what_cannot_shrink_is_stored_by_name_or_by_trial(self):
        root = os.path.join(self.tmp, "album")
        photo = self.make_file("a-photo.jpg", os.urandom(300000), root)
        # What follows a stored file is primed with its last 32 KiB: this
        # copy of its tail costs next to nothing.
        with open(photo, "rb") as handle:
            self.make_file("b-tail.txt", handle.read()[-20000:], root)
        noise = self.make_file("c-noise.dat", os.urandom(200000), root)
        self.make_file("d-small.bin", os.urandom(5000) * 2, root)
        data = self.archive_bytes(root, "gz")
        self.assertLess(len(data), 300000 + 200000 + 5000 + 12000)
        for path in (photo, noise):
            with open(path, "rb") as handle:
                content = handle.read()
            with self.subTest(name=os.path.basename(path)):
                # A stored block holds the bytes as they are, after a 5-byte
                # head: 0 (not final, stored), LEN and its complement.
                found = data.find(content[:1000])
                self.assertGreater(found, 5, "the file's first bytes are not stored")
                length, complement = struct.unpack("<HH", data[found - 4:found])
                self.assertEqual((data[found - 5], length ^ 0xFFFF), (0, complement))
        self.assertEqual(unpacked_stream(data, "gz"), self.plain_tar(root))
        self.check_with_tools(data, "gz")

    def test_a_stored_file_that_ends_early_leaves_a_valid_stream(self):
        sink = io.BytesIO()
        writer = woof.ParallelGzipWriter(sink, zlib, woof.CompressionPool(2))
        writer.write(b"header " * 100)
        writer.start_file("shrunk.jpg", 200000)  # the size listed; it gives less
        content = os.urandom(80000)
        for start in range(0, len(content), 30000):
            writer.write(content[start:start + 30000])
        writer.end_file()
        writer.write(bytes(120000))  # the padding that stands for what is missing
        writer.finish()
        self.assertEqual(gzip.decompress(sink.getvalue()),
                         b"header " * 100 + content + bytes(120000))
        self.assertIn(content[65535:65535 + 1000], sink.getvalue())  # stored, not deflated

    def test_zip_members_deflated_on_the_cores_open_everywhere(self):
        root = self.make_block_tree()
        self.make_file("small-noise.dat", os.urandom(4000), root)
        self.make_file("tiny-noise.dat", os.urandom(woof.SMALL_TRIAL_MIN - 1), root)
        data = self.archive_bytes(root, "zip")
        self.assertEqual(read_archive(data, "zip"), self.expected_tree(root, "zip"))
        self.assertEqual(self.archive_bytes(root, "zip", woof.CompressionPool(1)), data)
        top = os.path.basename(root) + "/"
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # What cannot shrink is not deflated: a small file is stored, a
            # large one goes in stored deflate blocks (5 bytes each, one or
            # more for each piece read).
            for name, method in (("camera.jpg", zipfile.ZIP_DEFLATED),  # by its name
                                 ("noise.dat", zipfile.ZIP_DEFLATED),  # by trial
                                 ("small-noise.dat", zipfile.ZIP_STORED),  # the small one's
                                 ("tiny-noise.dat", zipfile.ZIP_DEFLATED),  # too small to try
                                 ("text.txt", zipfile.ZIP_DEFLATED),
                                 ("a.txt", zipfile.ZIP_DEFLATED)):
                with self.subTest(name=name):
                    self.assertEqual(archive.getinfo(top + name).compress_type, method)
            for name in ("camera.jpg", "noise.dat"):
                info = archive.getinfo(top + name)
                self.assertLessEqual(info.compress_size,
                                     info.file_size + 5 * (info.file_size // 8192 + 2))
            # A file read whole has its CRC and sizes in its local header (no
            # data descriptor, bit 3); one read as it is sent, after its data.
            self.assertEqual(archive.getinfo(top + "small-noise.dat").flag_bits & 0x08, 0)
            self.assertEqual(archive.getinfo(top + "a.txt").flag_bits & 0x08, 0)
            self.assertEqual(archive.getinfo(top + "noise.dat").flag_bits & 0x08, 0x08)
            # Deflated in blocks, each primed with the one before it.
            self.assertLess(archive.getinfo(top + "echo.txt").compress_size, 60000)
        path = self.make_file("download.zip", data)
        for command in (("unzip", "-t"), ("bsdtar", "-tf"), ("7z", "t")):
            with self.subTest(tool=command[0]):
                run_tool(self, require_tool(command[0]), *command[1:], path)

    def test_an_empty_folder_and_a_one_block_folder_in_every_format(self):
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty)
        one = os.path.join(self.tmp, "one")
        self.make_file("note.txt", b"a single short note\n", one)
        for root in (empty, one):
            plain = self.plain_tar(root)
            for compression in ("gz", "bz2", "xz"):
                with self.subTest(root=os.path.basename(root), compression=compression):
                    data = self.archive_bytes(root, compression)
                    self.assertEqual(unpacked_stream(data, compression), plain)
                    self.check_with_tools(data, compression)
            with self.subTest(root=os.path.basename(root), compression="zip"):
                data = self.archive_bytes(root, "zip")
                self.assertEqual(read_archive(data, "zip"), read_archive(plain, "tar"))
                path = self.make_file("download.zip", data)
                run_tool(self, require_tool("unzip"), "-t", path)


class SharedWalkTests(ArchiveTestCase):
    """Requests share walks of the folder instead of each walking it again."""

    def make_numbered_files(self, count):
        """count files f0000.txt... of 0, 1, 2... bytes, 100 a folder, in tmp/many."""
        root = os.path.join(self.tmp, "many")
        for index in range(count):
            self.make_file("d%02d/f%04d.txt" % (index // 100, index), b"x" * index, root)
        return root

    def test_clients_looping_head_share_walks_while_a_download_goes_through(self):
        root = self.make_numbered_files(1500)
        offer = self.offer([root], "tar")
        walks = []
        real_walk = woof.walk_paths

        def counted_walk(*args):
            walks.append(1)
            return real_walk(*args)

        with mock.patch.object(woof, "walk_paths", counted_walk):
            run = self.start(offer, count=0)
            stop = threading.Event()
            heads = []

            def loop_head():
                connection = http.client.HTTPConnection("127.0.0.1", run.server.port,
                                                        timeout=DEADLINE)
                with contextlib.closing(connection):
                    while not stop.is_set():
                        connection.request("HEAD", run.server.offer_path)
                        response = connection.getresponse()
                        response.read()
                        heads.append(response.status)

            loopers = [threading.Thread(target=loop_head) for _ in range(8)]
            for looper in loopers:
                looper.start()
            try:
                wait_until(lambda: len(heads) >= 200, message="200 HEAD answers")
                _, data = self.download(run)
            finally:
                stop.set()
                for looper in loopers:
                    looper.join(DEADLINE)
        self.assertEqual(set(heads), {200})
        self.assertEqual(len(read_archive(data, "tar")), 1500 + 16)
        self.assertLess(len(walks), len(heads) // 4, "%d walks for %d HEAD requests"
                        % (len(walks), len(heads)))

    def test_a_name_added_at_the_top_shows_in_the_next_head(self):
        root = self.make_numbered_files(10)
        run = self.start(self.offer([root], "tar"), count=0)
        response, _ = self.request(run, "HEAD")
        before = response.getheader("ETag")
        self.make_file("added.txt", b"new", root)
        response, _ = self.request(run, "HEAD")
        self.assertNotEqual(response.getheader("ETag"), before)

    def test_a_part_that_meets_a_file_changed_since_the_walk_is_cut_short(self):
        root = self.make_numbered_files(3)
        offer = self.offer([root], "tar")
        body = offer.open()
        path = os.path.join(root, "d00", "f0002.txt")
        os.utime(path, (OLD_MTIME, OLD_MTIME))  # same size, another state
        with self.assertRaisesRegex(woof.FileChanged, "f0002.txt changed since it was listed"):
            self.body_bytes(body, 1, body.size)
        whole = self.body_bytes(body)  # a whole archive takes the file as it is
        self.assertEqual(read_archive(whole, "tar")["many/d00/f0002.txt"], b"xx")


class CompactManifestTests(ArchiveTestCase):
    """The manifest kept as columns gives back, entry by entry, what the walk found."""

    def walked_by_hand(self, root):
        """The entries a walk of root should find, from os.lstat, in archive order."""
        top = os.path.basename(root)
        entries = []

        def add(path, name):
            status = os.lstat(path)
            if stat.S_ISLNK(status.st_mode):
                target = os.path.relpath(os.path.realpath(path), os.path.dirname(path))
                if os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
                    entries.append(woof.ArchiveEntry(name, "link", 0, status.st_mtime_ns,
                                                     stat.S_IMODE(status.st_mode),
                                                     status.st_dev, status.st_ino, target))
                return
            kind = "folder" if stat.S_ISDIR(status.st_mode) else "file"
            if kind == "file" and not stat.S_ISREG(status.st_mode):
                return
            entries.append(woof.ArchiveEntry(name, kind, status.st_size if kind == "file" else 0,
                                             status.st_mtime_ns, stat.S_IMODE(status.st_mode),
                                             status.st_dev, status.st_ino))
            if kind == "folder":
                for child in sorted(os.listdir(path)):
                    add(os.path.join(path, child), name + "/" + child)

        add(root, top)
        return entries

    def odd_tree(self):
        """make_tricky_tree, and long, non-ASCII and (on Linux) undecodable names."""
        root = self.make_tricky_tree()
        long_name = "l" * 150
        self.make_file(os.path.join("sub", long_name, "x" * 120 + ".txt"), b"long\n", root)
        self.make_file(os.path.join("日本", "été.txt"), b"unicode\n", root)
        os.makedirs(os.path.join(root, "empty", "inner"))
        if sys.platform.startswith("linux"):
            with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as handle:
                handle.write(b"bytes")
        return root

    def test_the_entries_are_those_the_walk_found(self):
        root = self.odd_tree()
        manifest = woof.walk_paths(woof.resolve_offered_paths([root]), keep_links=True)
        expected = self.walked_by_hand(root)
        self.assertEqual(list(manifest.entries), expected)
        self.assertEqual(len(manifest.entries), len(expected))
        self.assertEqual(manifest.entries[-1], expected[-1])
        self.assertEqual(manifest.entries[3:6], expected[3:6])
        with self.assertRaises(IndexError):
            manifest.entries[len(expected)]
        names = [entry.name for entry in manifest.entries]
        self.assertIn(os.path.basename(root) + "/sub/" + "l" * 150 + "/" + "x" * 120 + ".txt",
                      names)
        if sys.platform.startswith("linux"):
            self.assertIn(os.path.basename(root) + "/caf\udce9.txt", names)

    def test_a_manifest_made_from_entries_gives_them_back(self):
        root = self.odd_tree()
        walked = woof.walk_paths(woof.resolve_offered_paths([root]), keep_links=True)
        entries = list(walked.entries)
        made = woof.Manifest(entries, [], dict(walked.roots))
        self.assertEqual(list(made.entries), entries)
        self.assertEqual(made.mtime, walked.mtime)

    def test_devices_and_file_ids_of_any_size_are_kept(self):
        # macOS can give a negative device number, Windows (ReFS) a 128-bit file ID.
        entries = [woof.ArchiveEntry("top", "folder", 0, 10 ** 18, 0o755, -5, 2 ** 70),
                   woof.ArchiveEntry("top/a", "file", 3, -10 ** 9, 0o644, 2 ** 64 + 1, 7),
                   woof.ArchiveEntry("top/b", "file", 0, 0, 0o600, 1, 2 ** 64 - 1)]
        made = woof.Manifest(entries, [], {"top": self.tmp})
        self.assertEqual(list(made.entries), entries)
        self.assertNotEqual(made.digest, woof.Manifest(entries[:2], [], {"top": self.tmp}).digest)

    def test_columns_stay_narrow_until_a_value_needs_more_with_one_digest_either_way(self):
        small = [woof.ArchiveEntry("top", "folder", 0, 10 ** 18, 0o755, 5, 7),
                 woof.ArchiveEntry("top/a", "file", 3, 10 ** 18, 0o644, 5, 8)]
        big = woof.ArchiveEntry("top/b", "file", 5 << 30, 10 ** 18, 0o644, 5, 9)
        narrow = woof.Manifest(small, [], {"top": self.tmp})
        grown = woof.Manifest(small + [big], [], {"top": self.tmp})
        columns = ("sizes", "devices", "inodes", "leaf_starts")
        self.assertEqual([getattr(narrow, name).itemsize for name in columns], [4] * 4)
        self.assertEqual([getattr(grown, name).itemsize for name in columns], [8] * 4)
        self.assertEqual(list(narrow.entries), small)
        self.assertEqual(list(grown.entries), small + [big])
        widened = woof.ManifestColumns()
        for entry in small:
            widened.add_entry(entry)
        widened.widen()
        self.assertEqual(woof.Manifest(widened, [], {"top": self.tmp}).digest, narrow.digest)

    def test_a_file_past_4_gib_widens_the_walk_and_the_tar_layout(self):
        root = os.path.join(self.tmp, "big")
        self.make_file("z.txt", b"after the big one\n", root)
        with open(os.path.join(root, "big.bin"), "wb") as handle:
            handle.truncate(5 << 30)  # sparse where the file system allows: nothing is read
        offered = woof.resolve_offered_paths([root])
        wide = woof.walk_paths(offered, keep_links=True)
        self.assertEqual(wide.sizes.itemsize, 8)
        self.assertEqual(wide.sizes[1], 5 << 30)
        offer = self.offer([root], "tar")
        body = offer.open()
        try:
            last = body.layout.starts[-1]
            self.assertEqual(last, 2 * woof.TAR_BLOCK + (5 << 30))  # the folder, big.bin
            tail = self.body_bytes(body, last, body.size)
        finally:
            body.close()
        with tarfile.open(fileobj=io.BytesIO(tail)) as archive:
            member = archive.next()
            self.assertEqual(member.name, "big/z.txt")
            self.assertEqual(archive.extractfile(member).read(), b"after the big one\n")
        # Without the big file, a fresh walk is narrow; a walk that starts
        # from the wide manifest keeps its columns.  One state, one digest.
        os.remove(os.path.join(root, "big.bin"))
        again = woof.walk_paths(offered, keep_links=True, previous=wide)
        fresh = woof.walk_paths(offered, keep_links=True)
        self.assertEqual(fresh.sizes.itemsize, 4)
        self.assertEqual(list(again.entries), list(fresh.entries))
        self.assertEqual(again.digest, fresh.digest)

    def ascii_tree(self):
        """Plain names only, so that every header is a plain ustar one, a link's too."""
        root = self.make_four_files(os.path.join(self.tmp, "plain"))
        if SYMLINKS:
            os.symlink(os.path.join(root, "d01", "f.txt"), os.path.join(root, "d00", "link"))
        return root

    def test_every_member_reads_back_from_the_plain_tar(self):
        for root in (self.odd_tree(), self.ascii_tree()):
            self.check_plain_tar(root)

    def check_plain_tar(self, root):
        offer = self.offer([root], "tar")
        body = offer.open()
        data = self.body_bytes(body)
        self.assertEqual(len(data), body.size)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            members = {member.name: member for member in archive.getmembers()}
            for entry in self.walked_by_hand(root):
                with self.subTest(name=entry.name[:40]):
                    member = members[entry.name]
                    self.assertEqual((member.size, member.mode, member.mtime, member.linkname),
                                     (entry.size, entry.mode, entry.mtime_ns // 10 ** 9,
                                      entry.target))
                    if entry.kind == "file":
                        path = os.path.join(os.path.dirname(root), *entry.name.split("/"))
                        with open(path, "rb") as handle:
                            self.assertEqual(archive.extractfile(member).read(), handle.read())

    def test_a_walk_that_loses_only_its_last_entry_keeps_every_other(self):
        if not SYMLINKS:
            self.skipTest(NO_SYMLINKS)
        base = os.path.join(self.tmp, "lose")
        root = self.make_four_files(os.path.join(base, "many"))
        self.make_file("f.txt", b"outside", os.path.join(base, "elsewhere"))
        hop = os.path.join(base, "hop")  # outside the offer: changing it changes no entry
        os.symlink(os.path.join(root, "d01"), hop)
        os.symlink(os.path.join(hop, "f.txt"), os.path.join(root, "d01", "zz"))
        offered = woof.resolve_offered_paths([root])
        before = woof.walk_paths(offered, keep_links=True)
        self.assertEqual([entry.name for entry in before.entries][-1], "many/d01/zz")
        os.remove(hop)
        os.symlink(os.path.join(base, "elsewhere"), hop)  # the last link now leads out
        after = woof.walk_paths(offered, True, before)
        self.assertEqual(list(after.entries), self.walked_by_hand(root))
        self.assertEqual(len(after.entries), len(before.entries) - 1)
        self.assertNotEqual(after.digest, before.digest)

    def test_a_walk_finding_nothing_changed_returns_the_last_manifest(self):
        root = self.odd_tree()
        offered = woof.resolve_offered_paths([root])
        manifest = woof.walk_paths(offered, keep_links=True)
        self.assertIs(woof.walk_paths(offered, True, manifest), manifest)

    def changes(self, root):
        """(what, how) pairs: each changes one entry of a tree made by make_four_files."""
        path = os.path.join(root, "d00", "f0002.txt")

        def grow():
            with open(path, "ab") as handle:
                handle.write(b"more")

        def rewrite_keeping_the_time():
            """New bytes, same size, the modification time put back (cp -p, rsync -t)."""
            before = os.stat(path)

            def rewritten():
                with open(path, "r+b") as handle:
                    handle.write(os.urandom(before.st_size))
                os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
                return os.stat(path).st_ctime_ns != before.st_ctime_ns  # a coarse clock moved

            wait_until(rewritten, message="the change time to move")

        return (("size", grow),
                ("rewritten, its time put back", rewrite_keeping_the_time),
                ("mtime", lambda: os.utime(path, (OLD_MTIME, OLD_MTIME))),
                ("mode", lambda: os.chmod(path, 0o400 if os.name == "nt" else 0o600)),
                ("added", lambda: self.make_file("d00/f0003.txt", b"new", root)),
                ("added at the end", lambda: self.make_file("d00/zz.txt", b"new", root)),
                ("removed", lambda: os.remove(path)),
                ("renamed", lambda: os.rename(path, os.path.join(root, "d00", "g.txt"))),
                ("folder added", lambda: os.makedirs(os.path.join(root, "d00", "new"))))

    def make_four_files(self, root):
        """d00/f0000.txt to d00/f0002.txt and d01/f.txt in root (what changes() changes)."""
        for index in range(3):
            self.make_file("d00/f%04d.txt" % index, b"x" * index, root)
        self.make_file("d01/f.txt", b"other", root)
        return root

    def test_a_change_found_by_the_matching_walk_changes_the_etag(self):
        for what, change in self.changes(os.path.join(self.tmp, "unused")):
            with self.subTest(change=what):
                if os.name == "nt" and what == "rewritten, its time put back":
                    self.skipTest("Windows keeps no change time (st_ctime is the creation time)")
                root = self.make_four_files(os.path.join(self.tmp, what.replace(" ", "-"), "many"))
                offered = woof.resolve_offered_paths([root])
                before = woof.walk_paths(offered, keep_links=True)
                dict(self.changes(root))[what]()
                after = woof.walk_paths(offered, True, before)
                self.assertIsNot(after, before)
                self.assertNotEqual(after.digest, before.digest)
                self.assertEqual(list(after.entries), self.walked_by_hand(root))
                self.assertEqual(after.digest, woof.walk_paths(offered, True).digest)

    def test_a_ranged_request_sees_a_file_changed_in_place_at_once(self):
        root = self.make_four_files(os.path.join(self.tmp, "many"))
        run = self.start(self.offer([root], "tar"), count=0)
        response, _ = self.request(run, "HEAD")
        before = response.getheader("ETag")
        with open(os.path.join(root, "d00", "f0001.txt"), "ab") as handle:
            handle.write(b"more")  # the folders' own times stay as they were
        response, _ = self.request(run, headers={"Range": "bytes=0-0"})
        self.assertEqual(response.status, 206)
        self.assertNotEqual(response.getheader("ETag"), before)

    def test_heads_wait_for_downloads_only_while_one_is_being_sent(self):
        root = self.make_four_files(os.path.join(self.tmp, "many"))
        offer = self.offer([root], "tar")
        head = offer.open(sending_body=False)
        head.close()
        self.assertEqual(offer.sending, 0)
        bodies = [offer.open(), offer.open(resuming=True)]
        self.assertEqual(offer.sending, 2)
        for body in bodies:
            self.body_bytes(body)
            body.close()
            body.close()  # a second close counts nothing
        self.assertEqual(offer.sending, 0)
        run = self.start(offer, count=0)
        self.download(run)
        wait_until(lambda: offer.sending == 0, message="the download's body to be closed")


class ReadAheadTests(ArchiveTestCase):
    """While an archive is sent, the disk is asked for the next files (READ_AHEAD):
    the same bytes as without, descriptors and threads bounded, and a folder
    already in the page cache costs read-ahead next to nothing."""

    def setUp(self):
        super().setUp()
        if not hasattr(os, "posix_fadvise"):
            self.skipTest("no posix_fadvise here: archives read without read-ahead")
        self.advised = collections.Counter()  # files asked for, by size asked
        advise = os.posix_fadvise

        def counting_advise(descriptor, offset, length, advice):
            self.advised[length] += 1
            return advise(descriptor, offset, length, advice)

        patcher = mock.patch.object(os, "posix_fadvise", counting_advise)
        patcher.start()
        self.addCleanup(patcher.stop)
        # The reading threads ask the disk themselves here, as where no helper
        # process can start, so that what they ask for is counted in-process
        # (ReadAheadHelperTests show the helper).
        self.real_ask = woof.ReadAheadHelper.ask
        patcher = mock.patch.object(woof.ReadAheadHelper, "ask", lambda helper, paths: False)
        patcher.start()
        self.addCleanup(patcher.stop)

    def many_files(self, count, size=lambda index: 100):
        root = os.path.join(self.tmp, "many")
        for index in range(count):
            folder = os.path.join(root, "d%03d" % (index // 500))
            if index % 500 == 0:
                os.makedirs(folder)
            with open(os.path.join(folder, "f%05d" % index), "wb") as handle:
                handle.write(b"%05d" % index * (size(index) // 5))
        return root

    def test_every_format_sends_the_same_bytes_with_read_ahead_and_without(self):
        root = self.make_tricky_tree()
        self.make_file(os.path.join("sub", "huge.bin"), os.urandom(3 << 20), root)
        many = self.many_files(300, size=lambda index: index * 997 % 150000)
        for compression, options in (("tar", {}), ("gz", {}), ("bz2", {}), ("xz", {}),
                                     ("zip", {}), ("zip", {"store": True})):
            with self.subTest(compression=compression, **options), \
                    mock.patch.object(woof, "READ_AHEAD_BYTES", 2 << 20), \
                    mock.patch.object(woof, "page_cached", lambda descriptor: False):
                self.advised.clear()
                ahead, plain = self.download_each_way(self.offer([root, many], compression,
                                                                 **options))
                self.assertEqual(ahead, plain)
                # (Files the archive reached first are not asked for: how many
                # depends on the machine's load.)
                self.assertGreater(sum(self.advised.values()), 0)
                # A big file is asked for up to READ_AHEAD_BYTES, the rest read as usual.
                self.assertLessEqual(max(self.advised), 2 << 20)

    def test_the_tail_of_a_stored_zip_reads_its_files_ahead_for_their_crcs(self):
        many = self.many_files(300, size=lambda index: 3000)
        offer = self.offer([many], "zip", store=True)
        with mock.patch.object(woof, "page_cached", lambda descriptor: False):
            run = self.start(offer, count=0)
            response, tail = self.request(run, headers={"Range": "bytes=-65536"})
        self.assertEqual(response.status, 206)
        self.assertGreater(sum(self.advised.values()), 0)
        response, whole = self.download(run)
        self.assertEqual(whole[-65536:], tail)
        self.assertEqual(len(read_archive(whole, "zip")), 301 + 1)

    def test_descriptors_and_threads_stay_bounded_on_a_folder_of_many_files(self):
        if not os.path.isdir("/proc/self/fd"):
            self.skipTest("needs /proc/self/fd to count descriptors")
        root = self.many_files(20000)
        for compression in ("tar", "gz"):
            with self.subTest(compression=compression), \
                    mock.patch.object(woof, "page_cached", lambda descriptor: False):
                self.advised.clear()
                run = self.start(self.offer([root], compression), count=1)
                descriptors = len(os.listdir("/proc/self/fd"))
                threads = threading.active_count()
                most_descriptors, most_threads = descriptors, threads
                response = self.connect(run)
                response.request("GET", run.server.offer_path)
                response = response.getresponse()
                self.assertEqual(response.status, 200)
                while response.read(16384):
                    most_descriptors = max(most_descriptors, len(os.listdir("/proc/self/fd")))
                    most_threads = max(most_threads, threading.active_count())
                run.wait()
                self.assertGreater(sum(self.advised.values()), 1000)
                # The client's and the server's socket, the folders and file being
                # sent, one file and its folder per reading thread.
                self.assertLessEqual(most_descriptors - descriptors,
                                     2 * woof.READ_AHEAD_THREADS + 8)
                self.assertLessEqual(most_threads - threads,
                                     woof.READ_AHEAD_THREADS + woof.USABLE_CORES + 4)

    def test_a_folder_swapped_for_a_link_since_the_walk_is_not_read_ahead_through(self):
        root = os.path.join(self.tmp, "offer")
        self.make_file(os.path.join("a", "b", "f.txt"), b"inside", root)
        self.make_file(os.path.join("b", "f.txt"), b"outside", os.path.join(self.tmp, "outside"))
        self.make_file(os.path.join("c", "g.txt"), b"moved", root)
        manifest = woof.walk_paths(woof.resolve_offered_paths([root]), keep_links=True)
        shutil.rmtree(os.path.join(root, "a"))
        os.symlink(os.path.join(self.tmp, "outside"), os.path.join(root, "a"))
        os.rename(os.path.join(root, "c"), os.path.join(self.tmp, "c moved"))
        ahead = woof.FilesAhead(manifest, woof.ReadAheadPool())
        with mock.patch.object(woof, "page_cached", lambda descriptor: False):
            ahead.fetch(0, len(manifest.kinds))
        self.assertEqual(sum(self.advised.values()), 0)

    def test_without_a_helper_process_the_threads_ask_the_disk_themselves(self):
        root = self.many_files(300)
        manifest = woof.walk_paths(woof.resolve_offered_paths([root]), keep_links=False)
        helper = woof.ReadAheadHelper([os.path.join(self.tmp, "no such program")])
        with mock.patch.object(woof.ReadAheadHelper, "ask", self.real_ask), \
                mock.patch.object(woof, "page_cached", lambda descriptor: False):
            woof.FilesAhead(manifest, woof.ReadAheadPool(helper=helper)).fetch(0, 300 + 2)
        self.assertTrue(helper.failed)
        self.assertEqual(sum(self.advised.values()), 300)

    def test_a_helper_that_dies_leaves_the_asking_to_the_threads(self):
        root = self.many_files(300)
        manifest = woof.walk_paths(woof.resolve_offered_paths([root]), keep_links=False)
        helper = woof.ReadAheadHelper()
        with mock.patch.object(woof.ReadAheadHelper, "ask", self.real_ask):
            self.assertTrue(helper.ask([root]))
            helper.process.kill()
            helper.process.wait()
            with mock.patch.object(woof, "page_cached", lambda descriptor: False):
                woof.FilesAhead(manifest, woof.ReadAheadPool(helper=helper)).fetch(0, 300 + 2)
        self.assertTrue(helper.failed)
        self.assertEqual(sum(self.advised.values()), 300)


    def test_a_folder_in_the_page_cache_is_only_looked_at_now_and_then(self):
        root = self.many_files(5000)
        with open(os.path.join(root, "d000", "f00000"), "rb") as handle:
            if not woof.page_cached(handle.fileno()):
                self.skipTest("this system cannot tell what the page cache holds")
        looks, look = [], woof.page_cached

        def counting_look(descriptor):
            looks.append(threading.current_thread().name)
            return look(descriptor)

        with mock.patch.object(woof, "page_cached", counting_look):
            ahead, plain = self.download_each_way(self.offer([root], "tar"))
        self.assertEqual(ahead, plain)
        self.assertEqual(sum(self.advised.values()), 0)
        self.assertLess(len(looks), 5000 // woof.READ_AHEAD_BATCH // 4)
        # Each look is the archive's own: a look handed to a reading thread
        # costs the archive more than the look (the interpreter's lock).
        self.assertGreater(len(looks), 0)
        self.assertNotIn("woof-read-ahead", looks)


class ReadAheadHelperTests(ArchiveTestCase):
    """The helper process asks the disk for the files it is named, away from
    woof's interpreter lock, never through a link, and ends with its input."""

    def setUp(self):
        super().setUp()
        if not woof.READ_AHEAD:
            self.skipTest("no posix_fadvise here: archives read without read-ahead")

    def test_the_helper_asks_the_disk_for_a_file_named_and_ends_when_told(self):
        path = os.path.realpath(self.make_file("cold.bin", os.urandom(1 << 20)))
        with open(path, "rb") as handle:
            descriptor = handle.fileno()
            if not woof.page_cached(descriptor):  # just written: it is
                self.skipTest("this system cannot tell what the page cache holds")
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the cache
            if woof.page_cached(descriptor):
                self.skipTest("this file system keeps every file in memory")
            helper = woof.ReadAheadHelper()
            self.assertTrue(helper.ask([path]))
            wait_until(lambda: woof.page_cached(descriptor), message="the helper's read-ahead")
        helper.close()
        self.assertIsNotNone(helper.process.returncode)

    def test_nothing_in_woofs_folder_or_environment_runs_in_the_helper(self):
        # An upload may leave a signal.py in the folder woof runs in.
        planted = os.path.join(self.tmp, "planted")
        for module in ("signal", "enum", "os", "sitecustomize"):
            self.make_file(module + ".py", ("open(%r, 'w').close()\n" % planted).encode())
        environment = dict(os.environ, PYTHONPATH=self.tmp, PYTHONSTARTUP=os.path.join(
            self.tmp, "signal.py"))
        finished = subprocess.run(woof.ReadAheadHelper().command, cwd=self.tmp, env=environment,
                                  input=os.fsencode(self.make_file("f.txt")) + b"\0",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertFalse(os.path.exists(planted))

    def test_the_helper_never_goes_through_a_link(self):
        helper = {"__name__": "woof_read_ahead_helper"}  # run here, not as a process
        exec(woof.READ_AHEAD_HELPER_CODE, helper)
        inside = self.make_file(os.path.join("offer", "a", "f.txt"), b"inside")
        outside = self.make_file(os.path.join("outside", "g.txt"), b"outside")
        os.symlink(os.path.join(self.tmp, "outside"), os.path.join(self.tmp, "offer", "b"))
        os.symlink(outside, os.path.join(self.tmp, "offer", "a", "link.txt"))
        advised = []

        def counting_advise(descriptor, offset, length, advice):
            advised.append(os.fstat(descriptor).st_ino)

        asker, top = helper["Asker"](1 << 20), os.path.realpath(self.tmp)
        with mock.patch.object(os, "posix_fadvise", counting_advise):
            for path in ("offer/b/g.txt", "offer/a/link.txt", "offer/a/f.txt"):
                asker.ask(os.fsencode(os.path.join(top, *path.split("/"))))
        asker.close()
        self.assertEqual(advised, [os.stat(inside).st_ino])

    def test_the_archive_hands_the_helper_the_paths_of_the_files_ahead(self):
        root = os.path.join(self.tmp, "many")
        for index in range(300):
            self.make_file(os.path.join("d%d" % (index // 100), "f%03d" % index),
                           b"%03d" % index * (index % 7), root)
        manifest = woof.walk_paths(woof.resolve_offered_paths([root]), keep_links=False)
        pool = woof.ReadAheadPool()
        asked = []
        ask = woof.ReadAheadHelper.ask

        def spying_ask(helper, paths):
            asked.extend(paths)
            return ask(helper, paths)

        with mock.patch.object(woof, "page_cached", lambda descriptor: False), \
                mock.patch.object(woof.ReadAheadHelper, "ask", spying_ask):
            woof.FilesAhead(manifest, pool).fetch(0, len(manifest.kinds))
        pool.helper.close()
        self.assertIsNotNone(pool.helper.process.returncode)
        files = [os.path.join(os.path.realpath(root), "d%d" % (index // 100), "f%03d" % index)
                 for index in range(300) if index % 7]
        self.assertEqual(asked, files[1:])  # the first: asked for by the thread, as a probe
        for compression in ("tar", "zip"):
            with self.subTest(compression=compression), \
                    mock.patch.object(woof, "page_cached", lambda descriptor: False):
                offer = self.offer([root], compression)
                ahead, plain = self.download_each_way(offer)
                self.assertEqual(ahead, plain)
                offer.read_ahead_pool.helper.close()


class SmallMemberTests(ArchiveTestCase):
    """Streamed archives read a file of at most ARCHIVE_READ_SIZE bytes at once,
    through descriptors, and a larger one as an open file: either side of the
    line, every format holds the same bytes."""

    def test_files_either_side_of_the_read_size_round_trip_in_every_streamed_format(self):
        root = os.path.join(self.tmp, "sizes")
        limit = woof.ARCHIVE_READ_SIZE
        expected = {"sizes": "dir"}
        for size in (0, 1, limit - 1, limit, limit + 1, 3 * limit):
            for name, data in (("%d.bin" % size, os.urandom(size)),
                               ("%d.txt" % size, b"w" * size),
                               ("%d.jpg" % size, os.urandom(size))):
                self.make_file(name, data, root)
                expected["sizes/" + name] = data
        for compression in ("gz", "bz2", "xz", "zip"):
            with self.subTest(compression=compression):
                run = self.start(self.offer([root], compression))
                self.assertEqual(read_archive(self.download(run)[1], compression), expected)


# ---------------------------------------------------------------------------
# Receiving files (-U)
# ---------------------------------------------------------------------------

BOUNDARY = "woof-test-7MA4YWxkTrZu0gW"


def form_body(parts, boundary=BOUNDARY):
    """A multipart/form-data body; parts are (Content-Disposition parameters, data)."""
    chunks = []
    for parameters, data in parts:
        if isinstance(parameters, str):
            parameters = parameters.encode("utf-8")
        chunks.append(b"--%s\r\nContent-Disposition: form-data; %s\r\n"
                      b"Content-Type: application/octet-stream\r\n\r\n%s\r\n"
                      % (boundary.encode(), parameters, data))
    chunks.append(b"--%s--\r\n" % boundary.encode())
    return b"".join(chunks)


def file_part(filename, data, field="file"):
    if isinstance(filename, str):
        filename = filename.encode("utf-8")
    return (b'name="%s"; filename="%s"' % (field.encode(), filename), data)


FORM_HEADERS = {"Content-Type": "multipart/form-data; boundary=" + BOUNDARY}


class PieceReader:
    """A body handed out in pieces of the given sizes, as a socket might."""

    def __init__(self, data, sizes):
        self.data = data
        self.sizes = list(sizes)
        self.position = 0

    def readinto(self, view):
        piece = self.sizes.pop(0) if self.sizes else len(self.data)
        data = self.data[self.position:self.position + min(len(view), max(piece, 1))]
        view[:len(data)] = data
        self.position += len(data)
        return len(data)


def read_form(reader, boundary=BOUNDARY, read_size=woof.COPY_BUFFER_SIZE):
    """[(field, filename, content)] of a whole form, read the way UploadHandler does."""
    parts = woof.MultipartReader(reader, boundary.encode(), read_size)
    found = []
    while True:
        part = parts.next_part()
        if part is None:
            return found
        pieces = []
        while True:
            data = parts.read()
            if not data:
                break
            pieces.append(bytes(data))
        found.append((part.field, part.filename, b"".join(pieces)))


class ParseSizeTest(unittest.TestCase):
    def test_sizes_people_write(self):
        table = [("1048576", 1048576), ("0", 0), ("7B", 7), ("10k", 10240), ("500M", 500 << 20),
                 ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("1.5 g", 3 << 29), (" 2 GB ", 2 * 10 ** 9),
                 ("3kB", 3000), ("1T", 1 << 40), (".5M", 1 << 19)]
        for text, size in table:
            with self.subTest(text=text):
                self.assertEqual(woof.parse_size(text), size)

    def test_other_text_is_refused(self):
        for text in ("", "G", "1e3", "5iB", "-1M", "2X", "1,5G", "1.2.3"):
            with self.subTest(text=text):
                self.assertRaises(ValueError, woof.parse_size, text)


class MultipartReaderTest(unittest.TestCase):
    BODY = (b"a preamble\r\n--" + BOUNDARY.encode() + b"\r\n"
            b'Content-Disposition: form-data; name="note"\r\n\r\n'
            b"just text\r\n"
            b"--" + BOUNDARY.encode() + b" \t\r\n"
            b'content-disposition: form-data; name="file"; filename="a \\"quoted\\" name.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n"
            b"line one\r\n\r\n--woof\r\n-\r\n--" + BOUNDARY[:-1].encode() + b"\r\n"
            b"--" + BOUNDARY.encode() + b"\r\n"
            b"Content-Disposition: form-data; name=\"up\"; filename=\"ete.txt\"; "
            b"filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22.txt\r\n\r\n"
            b"\r\n--" + BOUNDARY[:5].encode() + b"\r\n"
            b"--" + BOUNDARY.encode() + b"\r\n"
            b"Content-Disposition: form-data; name=\"upfile\"; filename=\"\xe6\x97\xa5\xe6\x9c\xac"
            b"%22.txt\"\r\n\r\n"
            b"\r\n--" + BOUNDARY.encode() + b"\r\n"
            b"Content-Disposition: form-data; name=\"bin\"; filename=\"C:\\dir\\all.bin\"\r\n\r\n"
            + bytes(range(256)) * 3 +
            b"\r\n--" + BOUNDARY.encode() + b"--\r\nan epilogue")
    EXPECTED = [
        ("note", None, b"just text"),
        ("file", 'a "quoted" name.txt',
         b"line one\r\n\r\n--woof\r\n-\r\n--" + BOUNDARY[:-1].encode()),
        ("up", '\u00e9t\u00e9 "x".txt', b"\r\n--" + BOUNDARY[:5].encode()),
        ("upfile", '\u65e5\u672c".txt', b""),
        ("bin", "C:\\dir\\all.bin", bytes(range(256)) * 3),
    ]

    def test_the_same_body_split_at_every_byte_reads_the_same(self):
        for split in range(len(self.BODY) + 1):
            with self.subTest(split=split):
                reader = PieceReader(self.BODY, [split, len(self.BODY)])
                self.assertEqual(read_form(reader), self.EXPECTED)

    def test_small_reads_of_every_size_read_the_same(self):
        for size in range(1, len(BOUNDARY) + 12):
            with self.subTest(size=size):
                reader = PieceReader(self.BODY, [size] * len(self.BODY))
                self.assertEqual(read_form(reader, read_size=size), self.EXPECTED)

    def test_a_body_cut_short_is_refused(self):
        for end in (0, 10, len(self.BODY) // 2, len(self.BODY) - len("--\r\nan epilogue")):
            with self.subTest(end=end):
                with self.assertRaises(woof.UploadRefused) as caught:
                    read_form(PieceReader(self.BODY[:end], [end]))
                self.assertEqual(caught.exception.status, 400)

    def test_malformed_parts_are_refused(self):
        bad = [b"--%s\r\nContent-Disposition: attachment\r\n\r\nx\r\n--%s--",
               b"--%sjunk\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--%s--",
               b"--%s\r\nX: " + b"y" * (woof.MAX_PART_HEADER + 10) + b"\r\n\r\nx\r\n--%s--"]
        for body in bad:
            body = body.replace(b"%s", BOUNDARY.encode())
            with self.subTest(body=body[:60]):
                with self.assertRaises(woof.UploadRefused):
                    read_form(PieceReader(body, [len(body)]))

    def test_header_parameters(self):
        table = [
            ('form-data; name="f"; filename="a.txt"', ("form-data", {"name": "f", "filename": "a.txt"})),
            ('Form-Data;NAME=f;filename=plain.txt', ("form-data", {"name": "f", "filename": "plain.txt"})),
            ('form-data; filename="C:\\x\\y.txt"', ("form-data", {"filename": "C:\\x\\y.txt"})),
            ('form-data; filename="a\\\\b\\"c"', ("form-data", {"filename": 'a\\b"c'})),
            ('form-data; filename="semi;colon.txt"', ("form-data", {"filename": "semi;colon.txt"})),
            ("form-data; filename*=UTF-8''%E2%82%AC.txt", ("form-data", {"filename*": "\u20ac.txt"})),
            ("form-data; filename*=iso-8859-1'en'%E9.txt", ("form-data", {"filename*": "\u00e9.txt"})),
            ("form-data; filename*=koi8-r''%E9.txt", ("form-data", {})),
            ("form-data; filename*=UTF-8''%FF.txt", ("form-data", {})),
            ('multipart/form-data; boundary="a b"', ("multipart/form-data", {"boundary": "a b"})),
        ]
        for value, expected in table:
            with self.subTest(value=value):
                self.assertEqual(woof.header_parameters(value), expected)

    def test_an_unclosed_quote_before_many_backslashes_is_parsed_quickly(self):
        # In a subprocess: a regular expression that backtracks holds the
        # interpreter lock, and no timeout in this process could stop it.
        script = ("import sys\nsys.path.insert(0, sys.argv[1])\nimport woof\n"
                  "run = '\\\\' * 100000\n"
                  "assert woof.form_boundary('multipart/form-data; boundary=\"' + run) is None\n"
                  "kind, found = woof.header_parameters('form-data; name=\"f\"; filename=\"' + run)\n"
                  "assert found['filename'] == '\"' + run, found\n")
        subprocess.run([sys.executable, "-c", script, HERE], check=True, timeout=20)

    def test_form_boundary(self):
        table = [("multipart/form-data; boundary=abc", b"abc"),
                 ('multipart/form-data; charset=utf-8; boundary="a:b"', b"a:b"),
                 ("multipart/form-data", None), ("text/plain; boundary=abc", None),
                 ("multipart/form-data; boundary=" + "x" * 71, None),
                 ("multipart/form-data; boundary=\u00e9", None), (None, None)]
        for value, expected in table:
            with self.subTest(value=value):
                self.assertEqual(woof.form_boundary(value), expected)


class ChunkedReaderTest(unittest.TestCase):
    def read_all(self, raw, limit=None, size=5):
        reader = woof.ChunkedReader(io.BufferedReader(io.BytesIO(raw)), limit)
        view = memoryview(bytearray(size))
        pieces = []
        while True:
            got = reader.readinto(view)
            if not got:
                return b"".join(pieces)
            pieces.append(bytes(view[:got]))

    def test_chunks_are_decoded(self):
        raw = (b"3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\nA\r\n" + b"\r\n" * 5
               + b"\r\n0\r\nX-T: 1\r\n\r\nnext")
        for size in (1, 2, 5, 100):
            with self.subTest(size=size):
                self.assertEqual(self.read_all(raw, size=size),
                                 b"abc0123456789abcdef\r\n\r\n\r\n\r\n\r\n")

    def test_malformed_or_cut_bodies_are_refused(self):
        for raw in (b"3\r\nab", b"3\r\nabcd\r\n0\r\n\r\n", b"x\r\nabc\r\n", b"-1\r\n",
                    b"", b"3\r\nabc\r\n", b"1" * 20 + b"\r\n", b"3\r\nabc\r\n0\r\n"):
            with self.subTest(raw=raw):
                with self.assertRaises(woof.UploadRefused) as caught:
                    self.read_all(raw)
                self.assertEqual(caught.exception.status, 400)

    def test_a_body_over_the_limit_is_refused_while_streaming(self):
        raw = b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n"
        self.assertEqual(self.read_all(raw, limit=8), b"abcdefgh")
        with self.assertRaises(woof.UploadRefused) as caught:
            self.read_all(raw, limit=7)
        self.assertEqual(caught.exception.status, 413)


class SafeNameTest(unittest.TestCase):
    def test_upload_paths(self):
        long_name = "\u00e9" * 150 + ".txt"
        table = [
            ("photo.jpg", ["photo.jpg"]),
            ("\u65e5\u672c \u00e9t\u00e9.txt", ["\u65e5\u672c \u00e9t\u00e9.txt"]),
            ("../../x", ["x"]),
            ("/etc/passwd", ["passwd"]),
            ("C:\\x", ["x"]),
            ("a\\..\\..\\b.txt", ["b.txt"]),
            ("..", [woof.UNNAMED_UPLOAD]),
            (".", [woof.UNNAMED_UPLOAD]),
            ("", [woof.UNNAMED_UPLOAD]),
            ("   ", [woof.UNNAMED_UPLOAD]),
            ("dir/", [woof.UNNAMED_UPLOAD]),
            ("a\nb\rc\x00d\x7fe.txt", ["a_b_c_d_e.txt"]),
            ("\u202egpj.exe", ["_gpj.exe"]),
            ("bad\udcffname", ["bad_name"]),
            (".bashrc", ["_.bashrc"]),
            (".ssh/authorized_keys", ["_.ssh", "authorized_keys"]),
            ("photos/2024/.hidden", ["photos", "2024", ".hidden"]),
            ("photos/2024/a.jpg", ["photos", "2024", "a.jpg"]),
            ("photos/../a.jpg", ["a.jpg"]),
            ("photos//a.jpg", ["a.jpg"]),
            ("/".join(["d"] * 40), ["d"]),
            ("/".join(["d" * 200] * 6) + "/deep.txt", ["deep.txt"]),
            ("/".join(["\u00e9" * 100] * 6), ["\u00e9" * 100]),
            ("con.txt", ["con.txt"]),
            (long_name, ["\u00e9" * 125 + ".txt"]),
        ]
        for client_name, expected in table:
            with self.subTest(name=client_name):
                self.assertEqual(woof.upload_path(client_name, windows=False), expected)

    def test_windows_names_are_avoided_on_windows(self):
        table = [("con.txt", ["_con.txt"]), ("NUL", ["_NUL"]), ("lpt1.tar.gz", ["_lpt1.tar.gz"]),
                 ("console.txt", ["console.txt"]), ('a<b>:c"d|e?f*.txt', ["a_b__c_d_e_f_.txt"]),
                 ("trailing. . ", ["trailing"]), ("C:x.txt", ["C_x.txt"]), ("...", ["upload"]),
                 ("dir/aux/x", ["dir", "_aux", "x"]), ("CON .txt", ["_CON .txt"]),
                 ("nul  .log", ["_nul  .log"]), ("a" * 254 + " b", ["a" * 254]),
                 ("x" * 254 + "." + "y" * 40, ["x" * 254]), ("CON" + " " * 300 + "x", ["_CON"]),
                 ("d/." + " " * 300 + "x", ["d", woof.UNNAMED_UPLOAD])]
        for client_name, expected in table:
            with self.subTest(name=client_name):
                self.assertEqual(woof.upload_path(client_name, windows=True), expected)

    def test_characters_the_file_system_cannot_encode_become_underscores(self):
        name = "caf\u00e9 \u20ac\u65e5.txt"
        table = [("ascii", "caf_ __.txt"), ("latin-1", "caf\u00e9 __.txt"), ("utf-8", name),
                 ("cp1252", "caf\u00e9 \u20ac_.txt")]
        for encoding, expected in table:
            with self.subTest(encoding=encoding):
                self.assertEqual(woof.safe_name(name, encoding=encoding), expected)

    def test_names_fit_in_255_bytes_with_their_extension(self):
        table = [("x" * 300, ""), ("\u65e5" * 100 + ".jpeg", ".jpeg"), ("a" * 250 + ".tar.gz", ".gz"),
                 ("b" * 10 + "." + "c" * 280, "")]
        for name, extension in table:
            with self.subTest(name=name[:20]):
                for safe in (woof.safe_name(name), woof.numbered_name(woof.safe_name(name), 12345)):
                    self.assertLessEqual(len(safe.encode("utf-8")), 255)
                    self.assertTrue(safe.endswith(extension))
                    self.assertEqual(safe[:5], name[:5])

    def test_numbered_names(self):
        table = [("a.txt", 1, "a (1).txt"), ("archive.tar.gz", 2, "archive.tar (2).gz"),
                 ("noext", 3, "noext (3)"), (".profile", 1, ".profile (1)")]
        for name, number, expected in table:
            with self.subTest(name=name):
                self.assertEqual(woof.numbered_name(name, number), expected)


class SavingTest(unittest.TestCase):
    def setUp(self):
        temporary = tempfile.TemporaryDirectory()
        self.addCleanup(temporary.cleanup)
        self.tmp = temporary.name

    def make_existing(self, name):
        with open(os.path.join(self.tmp, name), "wb") as handle:
            handle.write(b"old")

    def temporary_with(self, data):
        path, handle = woof.create_temporary(self.tmp)
        with handle:
            handle.write(data)
        return path

    def test_existing_files_are_never_replaced(self):
        with open(os.path.join(self.tmp, "a.txt"), "wb") as handle:
            handle.write(b"old")
        names = [woof.link_unique(self.temporary_with(b"new%d" % i), self.tmp, "a.txt")
                 for i in range(3)]
        self.assertEqual(names, ["a (1).txt", "a (2).txt", "a (3).txt"])
        self.assertEqual(sorted(os.listdir(self.tmp)), ["a (1).txt", "a (2).txt", "a (3).txt", "a.txt"])
        with open(os.path.join(self.tmp, "a.txt"), "rb") as handle:
            self.assertEqual(handle.read(), b"old")

    def test_without_hard_links_names_are_claimed_exclusively(self):
        with open(os.path.join(self.tmp, "a.txt"), "wb") as handle:
            handle.write(b"old")
        with mock.patch("woof.os.link", side_effect=PermissionError(1, "no links on FAT")):
            name = woof.link_unique(self.temporary_with(b"new"), self.tmp, "a.txt")
        self.assertEqual(name, "a (1).txt")
        self.assertEqual(sorted(os.listdir(self.tmp)), ["a (1).txt", "a.txt"])
        with open(os.path.join(self.tmp, name), "rb") as handle:
            self.assertEqual(handle.read(), b"new")

    def test_a_temporary_removed_meanwhile_leaves_no_empty_file_under_the_name(self):
        for link_error in (None, PermissionError(errno.EPERM, "no links on FAT")):
            with self.subTest(link_error=link_error):
                temporary = self.temporary_with(b"data")
                os.unlink(temporary)  # as discard() does when woof stops meanwhile
                with mock.patch("woof.os.link", side_effect=link_error or os.link):
                    with self.assertRaises(FileNotFoundError):
                        woof.claim_name(temporary, os.path.join(self.tmp, "final.txt"))
                self.assertEqual(os.listdir(self.tmp), [])

    def test_a_publish_that_fails_midway_removes_what_it_named(self):
        batch = woof.UploadBatch(self.tmp)
        for name in ("photos/2024/a.jpg", "photos/b.jpg", "c.txt"):
            batch.receive(name, iter([b"data", b""]).__next__)
        real_link_unique = woof.link_unique
        calls = []

        def fail_third(temporary, folder, name, *rest):
            calls.append(name)
            if len(calls) == 3:
                raise OSError(errno.ENAMETOOLONG, "File name too long")
            return real_link_unique(temporary, folder, name, *rest)

        with mock.patch("woof.link_unique", side_effect=fail_third):
            with self.assertRaises(woof.UploadRefused) as caught:
                batch.publish()
        self.assertEqual(caught.exception.status, 500)
        self.assertEqual(calls, ["a.jpg", "b.jpg", "c.txt"])
        batch.discard()
        self.assertEqual(os.listdir(self.tmp), [])

    def test_many_files_of_one_name_are_named_in_one_try_each(self):
        self.make_existing("same.txt")
        batch = woof.UploadBatch(self.tmp)
        for _ in range(200):
            batch.receive("same.txt", iter([b"x", b""]).__next__)
        with mock.patch("woof.claim_name", side_effect=woof.claim_name) as claim:
            saved = batch.publish()
        self.assertEqual([item.name for item in saved], ["same (%d).txt" % n for n in range(1, 201)])
        self.assertEqual(claim.call_count, 201)

    @unittest.skipUnless(SYMLINKS and os.name != "nt", "needs symbolic links")
    def test_new_folders_never_go_through_an_existing_link(self):
        outside = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, outside)
        os.symlink(outside, os.path.join(self.tmp, "photos"))
        os.symlink(os.path.join(outside, "missing"), os.path.join(self.tmp, "dangling"))
        self.assertEqual(woof.make_unique_folder(self.tmp, "photos"), "photos (1)")
        self.assertEqual(woof.make_unique_folder(self.tmp, "dangling"), "dangling (1)")
        self.assertEqual(os.listdir(outside), [])


def saved_line(name, size, data):
    """The line woof answers for a file it saved: name, size and SHA-256 (checked
    against hashlib's)."""
    return ("saved %s (%s, SHA-256 %s)\n" % (name, size, hashlib.sha256(data).hexdigest())
            ).encode("utf-8")


def sent_line(name, size, data):
    """The line woof.py URL FILE prints for a file a receiving woof saved and
    whose SHA-256 matched the sender's."""
    return saved_line(name, size, data).replace(b"\n", b" verified\n")


class UploadTestCase(WoofTestCase):
    """Starts woof receiving into self.inbox."""

    def setUp(self):
        super().setUp()
        self.inbox = os.path.join(self.tmp, "inbox")
        os.mkdir(self.inbox)

    def receive(self, **overrides):
        values = dict(upload_dir=self.inbox)
        values.update(overrides)
        log = woof.Log(stream=self.log_stream)
        server = woof.WoofServer(self.settings(**values), None, log, handler=woof.UploadHandler)
        run = ServerRun(server)
        self.addCleanup(run.stop)
        return run

    def inbox_files(self):
        """{relative path: bytes} of every file in the inbox, hidden ones included."""
        return {name: data for name, data in tree_of(self.inbox).items()
                if isinstance(data, bytes)}

    def post_form(self, run, parts, headers=None, path="/"):
        values = dict(FORM_HEADERS)
        values.update(headers or {})
        return self.request(run, "POST", path, values, form_body(parts))

    def partial_upload(self, run, head, sent):
        """A raw socket that sent head and `sent` bytes of body, once woof writes them."""
        raw = socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE)
        self.addCleanup(raw.close)
        raw.sendall(head + b"x" * sent)
        wait_until(lambda: any(name.startswith(".woof-") for name in os.listdir(self.inbox)),
                   message="a temporary file")
        return raw

    def wait_idle(self, run):
        wait_until(lambda: run.server.in_flight == 0 and not run.server.batches,
                   message="no upload in flight")


class UploadServerTest(UploadTestCase):
    def test_the_page_has_a_form_that_works_without_javascript(self):
        run = self.receive()
        response, data = self.request(run, "GET", "/")
        self.assert_response(response, data, 200,
                             {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})
        page = data.decode("utf-8")
        for needle in ('method="post" enctype="multipart/form-data"', 'type="file" name="file" multiple',
                       "webkitdirectory", 'name="viewport"', "prefers-color-scheme:dark",
                       "upload.onprogress"):
            self.assertIn(needle, page)
        self.assertNotIn("http", page.split("<body>")[1].replace("XMLHttpRequest", ""))
        self.assertIn("default-src 'none'", response.getheader("Content-Security-Policy"))
        response, data = self.request(run, "HEAD", "/")
        self.assert_response(response, data, 200, body=b"")
        response, data = self.request(run, "GET", "/elsewhere")
        self.assert_response(response, data, 302, {"Location": "/"})
        response, data = self.request(run, "GET", "/favicon.ico")
        self.assert_response(response, data, 404)
        self.assertFalse(run.done())

    def test_a_form_with_unicode_names_round_trips_and_counts_once(self):
        run = self.receive(count=2)
        files = {"\u00e9t\u00e9 \u65e5\u672c.txt": b"summer\r\n--" + BOUNDARY.encode()[:5],
                 "big.bin": os.urandom(3 << 20), "empty.txt": b""}
        parts = [("name=\"note\"", b"ignored")] + [file_part(n, d) for n, d in files.items()]
        response, data = self.post_form(run, parts)
        self.assert_response(response, data, 200, {"Content-Type": "text/plain; charset=utf-8"})
        names = list(files)
        self.assertEqual(data, saved_line(names[0], "15 B", files[names[0]])
                         + saved_line("big.bin", "3.0 MiB", files["big.bin"])
                         + saved_line("empty.txt", "0 B", b""))
        self.assertEqual(self.inbox_files(), files)
        self.assertFalse(run.done())
        self.assertRegex(self.log_text(), r"127\.0\.0\.1 saved big\.bin \(3\.0 MiB in [0-9.]+ s, .*/s"
                                          r", SHA-256 %s\)" % hashlib.sha256(files["big.bin"]).hexdigest())
        response, data = self.request(run, "PUT", "/last.txt", body=b"last")
        self.assert_response(response, data, 201, {"Location": "/last.txt"},
                             saved_line("last.txt", "4 B", b"last"))
        run.wait()
        self.assertIn("upload 2 of 2 complete", self.log_text())

    def test_every_answer_says_how_many_uploads_woof_still_takes(self):
        run = self.receive(count=2)
        response, data = self.request(run, "GET", "/")
        self.assert_response(response, data, 200, {"Woof-Uploads-Left": "2"})
        self.assertIn("woof takes 2 more uploads", data.decode("utf-8"))
        response, data = self.request(run, "PUT", "/one.txt", body=b"1")
        self.assert_response(response, data, 201, {"Woof-Uploads-Left": "1"})
        response, data = self.request(run, "GET", "/")
        self.assertIn("woof takes one more upload", data.decode("utf-8"))
        response, data = self.post_form(run, [file_part("b.txt", b"b"), file_part("a.txt", b"a")],
                                         {"Accept": "text/html"})
        self.assert_response(response, data, 200, {"Woof-Uploads-Left": "0"})
        page = data.decode("utf-8")
        self.assertLess(page.index("a.txt"), page.index("b.txt"))
        run.wait()
        unlimited = self.receive(count=0)
        response, data = self.request(unlimited, "GET", "/")
        self.assert_response(response, data, 200, {"Woof-Uploads-Left": None})
        self.assertIn('<p class="hint" id="left"></p>', data.decode("utf-8"))

    def test_browsers_get_a_page_naming_what_was_saved(self):
        run = self.receive()
        response, data = self.post_form(run, [file_part("<b>&.txt", b"x")],
                                        {"Accept": "text/html,application/xhtml+xml"})
        self.assert_response(response, data, 200, {"Content-Type": "text/html; charset=utf-8"})
        saved = "_b_&.txt" if woof.WINDOWS_FILE_NAMES else "<b>&.txt"
        self.assertIn("%s <small>(1 B)</small>" % html.escape(saved), data.decode("utf-8"))
        self.assertIn("finished receiving", data.decode("utf-8"))
        run.wait()
        self.assertEqual(self.inbox_files(), {saved: b"x"})

    def test_names_windows_refuses_are_saved_under_names_it_takes(self):
        # Checked for real on Windows, where CON is the console, "a:b" names
        # a stream of "a" and trailing dots vanish; elsewhere they are names.
        windows = woof.WINDOWS_FILE_NAMES
        table = [("CON", "_CON" if windows else "CON"),
                 ("a:b.txt", "a_b.txt" if windows else "a:b.txt"),
                 ("nul.txt", "_nul.txt" if windows else "nul.txt"),
                 ("trailing..", "trailing" if windows else "trailing..")]
        run = self.receive(count=len(table) + 1)
        for name, saved in table:
            with self.subTest(name=name):
                response, data = self.post_form(run, [file_part(name.encode(), name.encode())])
                self.assert_response(response, data, 200)
                self.assertEqual(data, saved_line(saved, "%d B" % len(name), name.encode()))
        self.assertEqual(self.inbox_files(), {saved: name.encode() for name, saved in table})

    def test_hostile_names_land_inside_under_safe_names(self):
        table = [(b"../../x", "x"), (b"/etc/passwd", "passwd"), (b"C:\\y", "y"), (b"..", "upload"),
                 (b"", "upload (1)"), (b"new%0Aline", "new_line"), (b"nul\x00byte", "nul_byte"),
                 (b".bashrc", "_.bashrc"), (b"\xc3\xa9" * 150 + b".txt", "\u00e9" * 125 + ".txt")]
        run = self.receive(count=len(table) + 1)
        for raw_name, saved in table:
            with self.subTest(name=raw_name[:20]):
                response, data = self.post_form(run, [file_part(raw_name, saved.encode())])
                self.assert_response(response, data, 200)
                self.assertEqual(data, saved_line(saved, "%d B" % len(saved.encode()), saved.encode()))
        self.assertEqual(self.inbox_files(), {saved: saved.encode() for _, saved in table})
        self.assertEqual(os.listdir(self.tmp), ["inbox"])
        response, data = self.request(run, "PUT", "/%2e%2e/%2e%2e/escape.txt", body=b"put")
        self.assert_response(response, data, 201, body=saved_line("escape.txt", "3 B", b"put"))
        self.assertEqual(os.listdir(self.tmp), ["inbox"])

    def test_same_names_are_numbered_and_nothing_is_overwritten(self):
        self.make_file("a.txt", b"old", self.inbox)
        run = self.receive(count=3)
        response, data = self.post_form(run, [file_part("a.txt", b"one"), file_part("a.txt", b"two")])
        self.assert_response(response, data, 200, body=saved_line("a (1).txt", "3 B", b"one")
                             + saved_line("a (2).txt", "3 B", b"two"))
        response, data = self.request(run, "PUT", "/a.txt", body=b"three")
        self.assert_response(response, data, 201, {"Location": "/a%20%283%29.txt"})
        response, data = self.request(run, "PUT", "/", body=b"unnamed")
        self.assert_response(response, data, 201, body=saved_line("upload", "7 B", b"unnamed"))
        self.assertEqual(self.inbox_files(), {"a.txt": b"old", "a (1).txt": b"one", "a (2).txt": b"two",
                                              "a (3).txt": b"three", "upload": b"unnamed"})

    def test_folder_uploads_make_new_folders_inside(self):
        os.mkdir(os.path.join(self.inbox, "photos"))
        self.make_file("keep.txt", b"mine", os.path.join(self.inbox, "photos"))
        run = self.receive(count=2)
        parts = [file_part("photos/2024/a.jpg", b"a"), file_part("photos/b.jpg", b"b"),
                 file_part("photos/2024/c.jpg", b"c"), file_part("other/x", b"x")]
        response, data = self.post_form(run, parts)
        self.assert_response(response, data, 200)
        self.assertEqual(self.inbox_files(), {"photos/keep.txt": b"mine", "photos (1)/2024/a.jpg": b"a",
                                              "photos (1)/b.jpg": b"b", "photos (1)/2024/c.jpg": b"c",
                                              "other/x": b"x"})
        response, data = self.request(run, "PUT", "/other/y", body=b"y")
        self.assert_response(response, data, 201, {"Location": "/other%20%281%29/y"})

    @unittest.skipUnless(SYMLINKS and os.name != "nt", "needs symbolic links")
    def test_folder_uploads_never_follow_a_link(self):
        outside = os.path.join(self.tmp, "outside")
        os.mkdir(outside)
        os.symlink(outside, os.path.join(self.inbox, "photos"))
        run = self.receive()
        response, data = self.post_form(run, [file_part("photos/a.jpg", b"a")])
        self.assert_response(response, data, 200, body=saved_line("photos (1)/a.jpg", "1 B", b"a"))
        self.assertEqual(os.listdir(outside), [])

    def test_an_interrupted_upload_leaves_nothing_and_is_not_counted(self):
        run = self.receive()
        body = form_body([file_part("cut.bin", b"x" * (8 << 20))])
        head = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                b"Content-Length: %d\r\n\r\n" % (BOUNDARY.encode(), len(body)))
        raw = self.partial_upload(run, head + body[:3 << 20], 0)
        raw.close()
        self.wait_idle(run)
        self.assertEqual(self.inbox_files(), {})
        self.assertFalse(run.done())
        self.assertRegex(self.log_text(), r'"POST / HTTP/1.1" 400 3.0 MiB in .* aborted: the body '
                                          r'ended after 3.0 MiB of 8.0 MiB')
        put = b"PUT /cut.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
        self.partial_upload(run, put, 3 << 20).close()
        self.wait_idle(run)
        self.assertEqual(self.inbox_files(), {})
        response, data = self.request(run, "PUT", "/whole.bin", body=b"whole")
        self.assert_response(response, data, 201)
        run.wait()
        self.assertEqual(self.inbox_files(), {"whole.bin": b"whole"})

    def test_a_client_that_stops_sending_times_out_and_leaves_nothing(self):
        run = self.receive(timeout=2.0)
        put = b"PUT /slow.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
        raw = self.partial_upload(run, put, 2 << 20)
        self.wait_idle(run)
        self.assertIn(b"408", raw.recv(4096))
        self.assertEqual(self.inbox_files(), {})
        self.assertFalse(run.done())
        self.assertIn("aborted: the client stopped sending", self.log_text())

    def test_a_folder_gone_while_serving_is_a_server_error(self):
        run = self.receive()
        os.rmdir(self.inbox)
        response, data = self.request(run, "PUT", "/late.txt", body=b"late")
        self.assert_response(response, data, 500)
        self.assertIn(b"cannot save the upload", data)
        self.assertFalse(run.done())

    def test_an_unexpected_error_while_saving_is_a_500_and_leaves_nothing(self):
        run = self.receive()
        failure = UnicodeEncodeError("ascii", "caf\u00e9.txt", 3, 4, "ordinal not in range(128)")
        with mock.patch("woof.os.link", side_effect=failure):
            response, data = self.request(run, "PUT", "/caf%C3%A9.txt", body=b"ab")
        self.assert_response(response, data, 500)
        self.wait_idle(run)
        self.assertEqual(self.inbox_files(), {})
        self.assertFalse(run.done())
        self.assertIn("woof: warning: an upload failed: UnicodeEncodeError", self.log_text())
        self.assertNotIn("Traceback", self.log_text())
        self.assertNotIn("connection failed", self.log_text())

    def test_stopping_woof_removes_uploads_in_progress(self):
        run = self.receive()
        put = b"PUT /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
        raw = self.partial_upload(run, put, 2 << 20)
        run.server.discard_uploads()
        self.assertEqual(self.inbox_files(), {})
        raw.close()
        self.wait_idle(run)
        self.assertEqual(self.inbox_files(), {})

    def test_chunked_put_round_trips(self):
        run = self.receive()
        data = os.urandom(3 << 20)
        pieces = (data[i:i + 70000] for i in range(0, len(data), 70000))
        connection = self.connect(run)
        connection.request("PUT", "/chunked.bin", body=pieces, encode_chunked=True)
        response = connection.getresponse()
        self.assert_response(response, response.read(), 201,
                             body=saved_line("chunked.bin", "3.0 MiB", data))
        run.wait()
        self.assertEqual(self.inbox_files(), {"chunked.bin": data})

    def test_max_upload_is_refused_up_front_and_while_streaming(self):
        run = self.receive(max_upload=1000)
        raw = self.raw_exchange(run, b"PUT /a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1001\r\n"
                                     b"Expect: 100-continue\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 413 "), raw[:100])
        self.assertNotIn(b"100 Continue", raw)
        response, data = self.post_form(run, [file_part("a", b"x" * 5000)])
        self.assert_response(response, data, 413)
        connection = self.connect(run)
        connection.request("PUT", "/b", body=iter([b"y" * 600, b"y" * 600]), encode_chunked=True)
        response = connection.getresponse()
        self.assert_response(response, response.read(), 413)
        self.wait_idle(run)
        response, data = self.request(run, "PUT", "/fits", body=b"z" * 1000)
        self.assert_response(response, data, 201)
        self.assertEqual(self.inbox_files(), {"fits": b"z" * 1000})

    def test_an_upload_of_too_many_files_is_refused_and_leaves_nothing(self):
        run = self.receive()
        with mock.patch("woof.MAX_UPLOAD_FILES", 3):
            response, data = self.post_form(run, [file_part("f%d" % n, b"x") for n in range(4)])
            self.assert_response(response, data, 413)
            self.assertIn(b"at most 3 files", data)
            self.wait_idle(run)
            self.assertEqual(self.inbox_files(), {})
            self.assertFalse(run.done())
            response, data = self.post_form(run, [file_part("f%d" % n, b"x") for n in range(3)])
            self.assert_response(response, data, 200)
        self.assertEqual(len(self.inbox_files()), 3)

    def test_a_body_larger_than_the_free_space_is_refused(self):
        run = self.receive()
        raw = self.raw_exchange(run, b"PUT /huge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n"
                                     b"Expect: 100-continue\r\n\r\n" % (1 << 62))
        self.assertTrue(raw.startswith(b"HTTP/1.1 507 "), raw[:100])
        self.assertIn(b"only", raw)
        self.assertEqual(self.inbox_files(), {})

    @staticmethod
    def form_request(body):
        return (b"POST / HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def test_requests_that_are_no_upload_are_refused(self):
        run = self.receive()
        table = [
            (b"POST / HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx", b"415"),
            (b"PUT /a HTTP/1.1\r\n\r\n", b"411"),
            (b"PUT /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"501"),
            (b"PUT /a HTTP/1.1\r\nContent-Length: 1x\r\n\r\nx", b"400"),
            (b"PUT /a HTTP/1.1\r\nContent-Length: \xb2\r\n\r\nxx", b"400"),
            (b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 5\r\n\r\nabcde", b"400"),
            (b"PUT /a HTTP/1.1\r\nContent-Length: 1, 5\r\n\r\nabcde", b"400"),
            (self.form_request(b"--b--\r\nno file at all"), b"400"),
            (self.form_request(b"--b\r\n\r\nno disposition\r\n--b--"), b"400"),
            (self.form_request(b'--b\r\nContent-Disposition: form-data; name="f"; '
                               b'filename="x"\r\n\r\nnot closed'), b"400"),
            (b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
        ]
        for request, status in table:
            with self.subTest(request=request[:40]):
                answer = self.raw_exchange(run, request)
                self.assertEqual(answer[9:12], status, answer[:200])
        self.wait_idle(run)
        self.assertEqual(self.inbox_files(), {})
        self.assertFalse(run.done())
        self.assertNotIn("connection failed", self.log_text())

    def test_a_content_length_repeated_alike_is_accepted(self):
        run = self.receive()
        answer = self.raw_exchange(run, b"PUT /a HTTP/1.1\r\nContent-Length: 2\r\n"
                                        b"Content-Length: 2, 2\r\n\r\nab")
        self.assertEqual(answer[9:12], b"201", answer[:200])
        self.assertEqual(self.inbox_files(), {"a": b"ab"})


@unittest.skipUnless(hasattr(os, "fork"), "needs resource limits (POSIX)")
class FullDiskTest(UploadTestCase):
    # A file-size limit makes write() fail with EFBIG, as a full disk fails
    # with ENOSPC, once SIGXFSZ (which would kill woof) is ignored.  Only
    # the woof subprocess gets the limit.
    LIMITED_WOOF = ("import resource, signal, sys\n"
                    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                    "resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))\n"
                    "sys.path.insert(0, sys.argv[1])\n"
                    "sys.dont_write_bytecode = True  # a .pyc cut at the limit\n"
                    "import woof\n"
                    "sys.exit(woof.main(sys.argv[2:], config_paths=()))\n")

    def resumable_upload_meets_the_full_disk(self, port):
        """An append that fills the disk gets 507; what fitted is kept for a
        resume, unpublished, and a DELETE removes it."""
        def ask(method, path, body=None, headers=None):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
            self.addCleanup(connection.close)
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response, response.read()
        response, _ = ask("POST", "/resumed.bin", b"", {"Upload-Complete": "?0",
                                                        "Upload-Length": "300000"})
        location = response.getheader("Location")
        response, body = ask("PATCH", location, os.urandom(300000), {
            "Upload-Complete": "?1", "Upload-Offset": "0",
            "Content-Type": "application/partial-upload"})
        self.assertEqual(response.status, 507, body)
        response, _ = ask("HEAD", location)
        self.assertEqual(response.status, 204)
        self.assertLessEqual(int(response.getheader("Upload-Offset")), 100000)
        self.assertEqual([name[:6] for name in self.inbox_files()], [".woof-"])
        response, _ = ask("DELETE", location)
        self.assertEqual(response.status, 204)
        self.assertEqual(self.inbox_files(), {})

    def test_a_disk_that_fills_gives_507_and_removes_the_partial_file(self):
        child = WoofProcess(self, ["-c", self.LIMITED_WOOF, HERE,
                                   "-U", self.inbox, "-i", "127.0.0.1", "-p", "0"], script=None)
        for method, path, body, headers in (
                ("PUT", "/big.bin", os.urandom(300000), {}),
                ("POST", "/", form_body([file_part("big.bin", os.urandom(300000))]), FORM_HEADERS)):
            with self.subTest(method=method):
                connection = http.client.HTTPConnection("127.0.0.1", child.port, timeout=DEADLINE)
                self.addCleanup(connection.close)
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                self.assert_response(response, response.read(), 507)
                self.assertEqual(self.inbox_files(), {})
        self.resumable_upload_meets_the_full_disk(child.port)
        connection = http.client.HTTPConnection("127.0.0.1", child.port, timeout=DEADLINE)
        self.addCleanup(connection.close)
        connection.request("PUT", "/small.txt", body=b"fits")
        response = connection.getresponse()
        self.assert_response(response, response.read(), 201)
        self.assertEqual(child.wait(), 0)
        self.assertEqual(self.inbox_files(), {"small.txt": b"fits"})


class RequestFramingTests(UploadTestCase):
    """Where a request ends is never in doubt: a body is read, dropped or
    closed on, never taken for the next request."""

    SMUGGLED = b"GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def exchange(self, port, payload):
        """Send payload on one connection, end the sending side, return all the answers."""
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw:
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            return read_to_end(raw)

    def final_statuses(self, answers):
        return [int(code) for code in re.findall(rb"HTTP/1\.1 ([2-5][0-9][0-9]) ", answers)]

    def test_a_body_on_get_or_head_is_never_read_as_a_request(self):
        run = self.start(self.make_file("f.txt", b"file data"), count=0)
        hidden = self.start(self.make_file("f.txt", b"file data"), count=0, secret="s3cret")
        page = self.receive(count=0)
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(self.SMUGGLED), self.SMUGGLED)
        # More than the sockets' buffers hold: the answer comes while the
        # client still sends, and must reach it all the same.
        large = self.SMUGGLED + b"x" * (256 * woof.MAX_IGNORED_BODY)
        cases = [
            ("GET, Content-Length", run, b"GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(self.SMUGGLED), self.SMUGGLED), 200),
            ("HEAD, Content-Length", run, b"HEAD /f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(self.SMUGGLED), self.SMUGGLED), 200),
            ("GET, chunked", run, b"GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" + chunked, 200),
            ("GET, large body", run, b"GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(large), large), 200),
            ("GET, 100-continue", run, b"GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s"
             % (len(self.SMUGGLED), self.SMUGGLED), 200),
            ("GET, wrong secret", hidden, b"GET /wrong/f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(self.SMUGGLED), self.SMUGGLED), 404),
            ("GET of the upload page", page, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(self.SMUGGLED), self.SMUGGLED), 200),
        ]
        # The client ends its sending side: the drain stops there, not at a
        # clock a busy machine could beat while the large body still flows.
        with mock.patch.object(woof, "DRAIN_SECONDS", DEADLINE):
            for label, server_run, payload, status in cases:
                with self.subTest(label):
                    answers = self.exchange(server_run.server.port, payload)
                    self.assertEqual(self.final_statuses(answers), [status], answers[:300])

    def test_a_small_body_on_get_is_dropped_and_the_connection_serves_on(self):
        run = self.start(self.make_file("f.txt", b"file data"), count=0)
        answers = self.exchange(run.server.port,
                                b"GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Content-Length: 10\r\n\r\nnot a head" + self.SMUGGLED)
        self.assertEqual(self.final_statuses(answers), [200, 200], answers[:300])
        self.assertEqual(answers.count(b"file data"), 2)

    def test_transfer_encoding_over_two_lines_reads_as_one_list(self):
        run = self.receive(count=0)
        body = b"5\r\nhello\r\n0\r\n\r\n"
        cases = [
            ((b"chunked", b"gzip"), 501),
            ((b"chunked, gzip",), 501),
            ((b"gzip", b"chunked"), 501),
            ((b"gzip, chunked",), 501),
            ((b"chunked", b"chunked"), 501),
            ((b"chunked",), 201),
        ]
        for number, (lines, status) in enumerate(cases):
            with self.subTest(lines=lines):
                name = b"te%d.txt" % number
                head = b"".join(b"Transfer-Encoding: %s\r\n" % line for line in lines)
                answers = self.exchange(run.server.port,
                                        b"PUT /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n%s"
                                        % (name, head, body))
                self.assertEqual(self.final_statuses(answers), [status], answers[:300])
                saved = self.inbox_files()
                if status == 201:
                    self.assertEqual(saved.get(name.decode("ascii")), b"hello")
                else:
                    self.assertNotIn(name.decode("ascii"), saved)

    def test_a_request_target_that_cannot_be_parsed_gets_400(self):
        runs = [("download", self.start(self.make_file("f.txt"))),
                ("secret", self.start(self.make_file("f.txt"), secret="s3cret")),
                ("upload", self.receive())]
        for label, run in runs:
            for target in (b"http://[/x", b"http://[::1/f.txt"):
                with self.subTest(label, target=target):
                    answers = self.exchange(run.server.port, b"GET %s HTTP/1.1\r\n"
                                            b"Host: 127.0.0.1\r\n\r\n" % target)
                    self.assertEqual(self.final_statuses(answers), [400], answers[:300])
        self.assertNotIn("Traceback", self.log_text())


# ---------------------------------------------------------------------------
# Terminal: QR code
# ---------------------------------------------------------------------------

# Bytes a level M symbol of each version holds in byte mode (ISO/IEC 18004
# Table 7).
QR_BYTE_CAPACITY_M = (14, 26, 42, 62, 84, 106, 122, 152, 180, 213, 251, 287, 331, 362, 412,
                      450, 504, 560, 624, 666, 711, 779, 857, 911, 997, 1059, 1125, 1190,
                      1264, 1370, 1452, 1538, 1628, 1722, 1809, 1911, 1989, 2099, 2213, 2331)
HALF_BLOCK_MODULES = {" ": (False, False), "\u2580": (True, False),
                      "\u2584": (False, True), "\u2588": (True, True)}
ANSI_SEQUENCE = re.compile("\x1b\\[[0-9;]*m")


def modules_of_lines(lines):
    """The rows of modules that qr_lines' text shows, colours ignored."""
    rows = []
    for line in lines:
        pairs = [HALF_BLOCK_MODULES[glyph] for glyph in ANSI_SEQUENCE.sub("", line)]
        rows.append(tuple(upper for upper, _ in pairs))
        rows.append(tuple(lower for _, lower in pairs))
    return rows


def write_png(path, rows, scale=4):
    """A greyscale PNG of rows of modules (True dark), scale pixels a module."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    lines = []
    for row in rows:
        pixels = bytes(0 if dark else 255 for dark in row for _ in range(scale))
        lines.extend([b"\x00" + pixels] * scale)
    header = struct.pack(">IIBBBBB", len(rows[0]) * scale, len(rows) * scale, 8, 0, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"".join(lines))) + chunk(b"IEND", b""))


def module_text(matrix):
    return ["".join("1" if module else "0" for module in row) for row in matrix]


class QrCodeTests(unittest.TestCase):

    def test_each_length_gets_the_smallest_version_that_holds_it(self):
        for version, capacity in enumerate(QR_BYTE_CAPACITY_M, 1):
            with self.subTest(version=version):
                self.assertEqual(woof.qr_version(capacity), version)
                if version < 40:
                    self.assertEqual(woof.qr_version(capacity + 1), version + 1)

    def test_data_beyond_version_40_is_refused_with_its_length_and_the_limit(self):
        self.assertEqual(len(woof.qr_matrix(b"x" * 2331)), 177)
        for length in (2332, 2400, 10000):
            with self.subTest(length=length):
                with self.assertRaises(woof.WoofError) as caught:
                    woof.qr_matrix(b"x" * length)
                self.assertEqual(str(caught.exception), "the URL is too long for a QR code "
                                 "(%d bytes; at most 2331)" % length)

    def test_data_codewords_end_with_terminator_and_pad_codewords(self):
        table = [
            (b"a", 1, "401610" + "ec11" * 6 + "ec"),
            (b"a" * 14, 1, "40e6" + "16" * 13 + "10"),
            (b"ab", 2, "40261620" + "ec11" * 12),
        ]
        for data, version, expected in table:
            with self.subTest(data=data):
                self.assertEqual(woof.qr_data_codewords(data, version).hex(), expected)

    def test_error_correction_of_the_standards_worked_example(self):
        # ISO/IEC 18004 Annex I: "01234567" as a version 1-M symbol.
        data = bytes.fromhex("10200c566180ec11ec11ec11ec11ec11")
        self.assertEqual(woof.qr_error_correction(data, 10).hex(), "a524d4c1ed36c7872c55")

    def test_format_information_of_level_m_for_each_mask(self):
        # ISO/IEC 18004 Table C.1, masked with 101010000010010.
        table = [0x5412, 0x5125, 0x5E7C, 0x5B4B, 0x45F9, 0x40CE, 0x4F97, 0x4AA0]
        for mask, expected in enumerate(table):
            with self.subTest(mask=mask):
                self.assertEqual(woof.qr_format_bits(mask), expected)

    def test_version_information(self):
        # ISO/IEC 18004 Table D.1.
        for version, expected in ((7, 0x07C94), (8, 0x085BC), (10, 0x0A4D3), (40, 0x28C69)):
            with self.subTest(version=version):
                self.assertEqual(woof.qr_bch_code(version, woof.QR_VERSION_GENERATOR), expected)

    def test_alignment_pattern_centres(self):
        # ISO/IEC 18004 Table E.1, version 32 included for its odd spacing.
        table = [
            (1, ()),
            (2, (6, 18)),
            (7, (6, 22, 38)),
            (15, (6, 26, 48, 70)),
            (32, (6, 34, 60, 86, 112, 138)),
            (36, (6, 24, 50, 76, 102, 128, 154)),
            (40, (6, 30, 58, 86, 114, 142, 170)),
        ]
        for version, expected in table:
            with self.subTest(version=version):
                self.assertEqual(woof.qr_alignment_centres(version), expected)

    def test_every_version_has_room_for_exactly_its_codewords(self):
        for version in range(1, 41):
            with self.subTest(version=version):
                positions = woof.qr_codeword_positions(woof.qr_function_patterns(version))
                self.assertEqual(len(positions), woof.qr_data_modules(version))
                self.assertEqual(len(set(positions)), len(positions))

    def test_finder_like_patterns_need_four_light_modules_on_one_side(self):
        table = [
            (b"00001011101", 1),
            (b"10111010000", 1),
            (b"000010111010000", 1),
            (b"1011101", 1),
            (b"11010111010110011", 0),
            (b"1000101110101", 0),
            (b"1000001011101011101000001", 2),
            (b"000010111011101" + b"0" * 4, 2),
        ]
        for line, expected in table:
            with self.subTest(line=line):
                self.assertEqual(woof.qr_finder_like_patterns(line), expected)

    def test_penalty_adds_the_four_rules(self):
        # All light, 5 x 5: ten runs of 5 (3 each), sixteen 2 x 2 squares
        # (3 each), no finder-like pattern, 50% from balance (10 a 5% step).
        self.assertEqual(woof.qr_penalty([bytearray(b"00000")] * 5), 30 + 48 + 0 + 100)
        # A checkerboard: no run, no square, 13 dark of 25 (52%).
        board = [bytearray(b"10101"), bytearray(b"01010")] * 2 + [bytearray(b"10101")]
        self.assertEqual(woof.qr_penalty(board), 0)
        self.assertEqual(woof.qr_same_colour_squares([b"1110", b"1100", b"0000"]), 2)

    def test_lines_draw_dark_modules_in_half_blocks_inside_the_quiet_zone(self):
        blank = " " * 9
        self.assertEqual(woof.qr_lines(((True,),), False),
                         [blank, blank, "    \u2580    ", blank, blank])
        self.assertEqual(woof.qr_lines(((True, False), (True, True)), False),
                         ["          "] * 2 + ["    \u2588\u2584    "] + ["          "] * 2)

    def test_lines_show_every_module_and_the_last_line_only_its_upper_half(self):
        matrix = woof.qr_matrix(b"http://192.168.1.20:8080/")
        size = len(matrix)
        margin = (False,) * 4
        padded = ([(False,) * (size + 8)] * 4 + [margin + row + margin for row in matrix]
                  + [(False,) * (size + 8)] * 4)
        lines = woof.qr_lines(matrix, False)
        self.assertEqual(len(lines), (size + 9) // 2)
        self.assertEqual({len(line) for line in lines}, {size + 8})
        self.assertEqual(modules_of_lines(lines), padded + [(False,) * (size + 8)])

    def test_colour_lines_force_black_on_white_and_reset_at_their_end(self):
        matrix = woof.qr_matrix(b"http://192.168.1.20:8080/")
        plain = woof.qr_lines(matrix, False)
        coloured = woof.qr_lines(matrix, True)
        self.assertEqual(coloured, ["\x1b[30;47m" + line + "\x1b[0m" for line in plain])


# Run by WOOF_REFERENCE_PYTHON (a Python with segno): for each hex string on
# stdin, segno's version, its symbol for each of the eight masks, and its
# penalty points for each of these complete symbols.
REFERENCE_SCRIPT = r"""
import json, sys
import segno
from segno import encoder

# segno adds 8 padding bits where the bit stream already ends on a codeword
# boundary (issues heuer/segno#123 and #148); ISO/IEC 18004 7.4.10 adds none.
write_padding_bits = encoder.write_padding_bits
def standard_padding_bits(buff, version, length, *rest):
    if length % 8:
        write_padding_bits(buff, version, length, *rest)
encoder.write_padding_bits = standard_padding_bits

def make(data, mask=None):
    return segno.make(data, error="m", mode="byte", boost_error=False, micro=False, mask=mask)

results = []
for data in map(bytes.fromhex, json.load(sys.stdin)):
    symbols = [make(data, mask).matrix for mask in range(8)]
    results.append({
        "version": make(data, 0).version,
        "symbols": [["".join(map(str, row)) for row in symbol] for symbol in symbols],
        "penalties": [sum(encoder.mask_scores(symbol, len(symbol), len(symbol)))
                      for symbol in symbols],
    })
print(json.dumps(results))
"""

URL_HOST = "http://192.168.1.20:8080/"


class QrCodeReferenceTests(WoofTestCase):
    def reference_python(self):
        python = os.environ.get("WOOF_REFERENCE_PYTHON")
        missing = None
        if not python or not os.path.exists(python):
            missing = "WOOF_REFERENCE_PYTHON (a Python with segno) is not set"
        elif subprocess.run([python, "-c", "import segno"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=DEADLINE).returncode != 0:
            missing = "%s has no segno" % python
        if missing:
            skip_or_fail(missing)
        return python

    def test_symbols_are_the_reference_encoders_module_for_module(self):
        python = self.reference_python()
        table = [
            (1, b"http://x.y/f"),
            (2, b"http://10.0.0.2:8080/"),
            (4, (URL_HOST + "Compte%20rendu%20%C3%A9t%C3%A9.pdf").encode("ascii")),
            (7, ("http://[2001:db8::1]:8080/" + "Photos%20de%20vacances/" * 3
                 + "plage%20du%20matin.jpg").encode("ascii")),
            (10, (URL_HOST + "d%C3%A9p%C3%B4t/" * 11 + "fin.txt").encode("ascii")),
            (26, (URL_HOST + "Dossier%20partag%C3%A9%20" * 40).encode("ascii")),
            (40, ("F\u00eate \u00e0 la maison ".encode("utf-8") * 123)[:2331]),
        ]
        output = subprocess.run([python, "-c", REFERENCE_SCRIPT], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=300, universal_newlines=True,
                                input=json.dumps([data.hex() for _, data in table]))
        self.assertEqual(output.returncode, 0, output.stderr[-3000:])
        for (version, data), reference in zip(table, json.loads(output.stdout)):
            with self.subTest(version=version, length=len(data)):
                matrix = module_text(woof.qr_matrix(data))
                self.assertEqual(((len(matrix) - 17) // 4, reference["version"]),
                                 (version, version))
                differences = [sum(a != b for ours, theirs in zip(matrix, symbol)
                                   for a, b in zip(ours, theirs))
                               for symbol in reference["symbols"]]
                self.assertIn(0, differences, "modules differing from the reference's "
                              "symbol for each mask: %s" % differences)
                # The mask whose complete symbol (format information drawn)
                # scores lowest by the reference's own penalty rules
                # (7.8.3.1); segno itself scores before drawing it.
                penalties = reference["penalties"]
                self.assertEqual(differences.index(0), penalties.index(min(penalties)),
                                 penalties)


# zbarimg's image library looks for a desktop session bus and complains on
# stderr when there is none; it needs none to read a PNG.
ZBARIMG_ENVIRONMENT = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="disabled:")


class QrCodeScanTests(WoofTestCase):

    def test_zbarimg_reads_the_printed_text_in_colour_or_not(self):
        zbarimg = require_tool("zbarimg")
        long_url = (URL_HOST + "Archives%20de%20l%27%C3%A9quipe/" * 7
                    + "r%C3%A9sum%C3%A9.tar.gz")
        urls = [URL_HOST + "Compte%20rendu%20%C3%A9t%C3%A9.pdf",
                URL_HOST + "kZ3q_Vn8-Rt0wYp2Lx7mQa/rapport.pdf", long_url]
        self.assertGreaterEqual(len(woof.qr_matrix(long_url.encode("ascii"))), 17 + 4 * 10)
        for url in urls:
            matrix = woof.qr_matrix(url.encode("ascii"))
            for colour in (False, True):
                with self.subTest(url=url, colour=colour):
                    path = os.path.join(self.tmp, "qr.png")
                    write_png(path, modules_of_lines(woof.qr_lines(matrix, colour)))
                    output = subprocess.run([zbarimg, "--raw", "-q", path],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            env=ZBARIMG_ENVIRONMENT, timeout=DEADLINE)
                    self.assertEqual(output.returncode, 0, output.stderr)
                    self.assertEqual(output.stdout.decode("utf-8").rstrip("\n"), url)


# ---------------------------------------------------------------------------
# Security: the throwaway certificate
# ---------------------------------------------------------------------------

CERTIFICATE_HOSTS = ["192.168.1.20", "fd00::1", "localhost", "myhost"]
# The b of P-256's equation y^2 = x^3 - 3x + b (SEC 2 version 2, 2.4.2).
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def run_tool(test, *command, **options):
    """Run a command-line tool; fail the test, with its stderr, when it fails."""
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=DEADLINE, **options)
    test.assertEqual(result.returncode, 0, result.stderr.decode("utf-8", "replace"))
    return result.stdout


def certificate_validity(test, openssl, certificate_path):
    """(notBefore, notAfter) of a certificate in seconds since the epoch, as openssl reads them."""
    output = run_tool(test, openssl, "x509", "-noout", "-startdate", "-enddate",
                      "-in", certificate_path).decode()
    return tuple(ssl.cert_time_to_seconds(line.split("=", 1)[1]) for line in output.splitlines())


def affine_add(first, second):
    """P + Q on P-256 in affine coordinates, None being the point at infinity.

    Written apart from woof's Jacobian formulas, to check them.
    """
    p = woof.P256_P
    if first is None:
        return second
    if second is None:
        return first
    (x1, y1), (x2, y2) = first, second
    if x1 == x2 and (y1 + y2) % p == 0:
        return None
    if first == second:
        slope = (3 * x1 * x1 - 3) * pow(2 * y1, p - 2, p) % p
    else:
        slope = (y2 - y1) * pow(x2 - x1, p - 2, p) % p
    x3 = (slope * slope - x1 - x2) % p
    return x3, (slope * (x1 - x3) - y1) % p


def affine_multiply(scalar, point):
    result = None
    for bit in bin(scalar)[2:]:
        result = affine_add(result, result)
        if bit == "1":
            result = affine_add(result, point)
    return result


def ecdsa_signature_is_valid(public_point, message, r, s):
    """ECDSA verification with SHA-256 (SEC 1 version 2, 4.1.4), in affine coordinates."""
    n = woof.P256_N
    if not (0 < r < n and 0 < s < n):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    s_inverse = pow(s, n - 2, n)
    point = affine_add(affine_multiply(e * s_inverse % n, woof.P256_G),
                       affine_multiply(r * s_inverse % n, public_point))
    return point is not None and point[0] % n == r


class DerEncodingTests(unittest.TestCase):

    def test_integers_take_the_fewest_octets_that_keep_the_sign_bit_clear(self):
        table = [
            (0, "020100"),
            (1, "020101"),
            (127, "02017f"),
            (128, "02020080"),
            (255, "020200ff"),
            (256, "02020100"),
            (0x7FFF, "02027fff"),
            (0x8000, "0203008000"),
            (1 << 159, "021500" + "80" + "00" * 19),
        ]
        for value, expected in table:
            with self.subTest(value=value):
                self.assertEqual(woof.der_integer(value).hex(), expected)

    def test_lengths_are_short_below_128_and_minimal_above(self):
        table = [
            (0, "00"),
            (127, "7f"),
            (128, "8180"),
            (255, "81ff"),
            (256, "820100"),
            (65535, "82ffff"),
            (65536, "83010000"),
        ]
        for size, expected in table:
            with self.subTest(size=size):
                self.assertEqual(woof.der_length(size).hex(), expected)
                element = woof.der_octet_string(b"x" * size)
                self.assertEqual(element.hex(), "04" + expected + "78" * size)
                self.assertEqual(woof.der_read(element, 0), (0x04, len(element) - size, len(element)))

    def test_object_identifiers_are_encoded_in_base_128(self):
        table = [
            ("2.5.4.3", "0603550403"),
            ("2.5.29.17", "0603551d11"),
            ("1.2.840.10045.2.1", "06072a8648ce3d0201"),
            ("1.2.840.10045.3.1.7", "06082a8648ce3d030107"),
            ("1.3.6.1.5.5.7.3.1", "06082b06010505070301"),
        ]
        for dotted, expected in table:
            with self.subTest(oid=dotted):
                self.assertEqual(woof.der_oid(dotted).hex(), expected)

    def test_times_before_2050_are_utc_times_and_later_ones_generalized(self):
        table = [
            (0, b"\x17\x0d700101000000Z"),
            (1700000000, b"\x17\x0d231114221320Z"),
            (2524607999, b"\x17\x0d491231235959Z"),
            (2524608000, b"\x18\x0f20500101000000Z"),
        ]
        for seconds, expected in table:
            with self.subTest(seconds=seconds):
                self.assertEqual(woof.der_time(seconds), expected)

    def test_sets_are_sorted_and_other_elements_keep_their_order(self):
        self.assertEqual(woof.der_set(b"\x02\x01\x02", b"\x02\x01\x01").hex(), "3106020101020102")
        self.assertEqual(woof.der_sequence(b"\x02\x01\x02", b"\x02\x01\x01").hex(), "3006020102020101")
        self.assertEqual(woof.der_bit_string(b"\x04\xff").hex(), "03030004ff")
        self.assertEqual(woof.der_boolean(True).hex(), "0101ff")
        self.assertEqual(woof.der_utf8_string("é").hex(), "0c02c3a9")
        self.assertEqual(woof.der_explicit(3, b"\x05\x00").hex(), "a3020500")
        self.assertEqual(woof.der_implicit(7, b"\x7f\x00\x00\x01").hex(), "87047f000001")

    def test_subject_alt_names_are_addresses_or_dns_names(self):
        v6 = bytes.fromhex("fd000000000000000000000000000001")
        table = [
            ("192.168.1.20", b"\x87\x04\xc0\xa8\x01\x14"),
            ("fd00::1", b"\x87\x10" + v6),
            ("[fd00::1]", b"\x87\x10" + v6),
            ("fe80::1%eth0", b"\x87\x10\xfe\x80" + b"\x00" * 13 + b"\x01"),
            ("localhost", b"\x82\x09localhost"),
            ("b\u00fccher.example", b"\x82\x15xn--bcher-kva.example"),
        ]
        for host, expected in table:
            with self.subTest(host=host):
                self.assertEqual(woof.subject_alt_name(host), expected)

    def test_hosts_that_cannot_be_named_are_refused(self):
        for host in ("", "bad..example", "a" * 64 + ".example"):
            with self.subTest(host=host):
                with self.assertRaises(woof.WoofError):
                    woof.subject_alt_name(host)

    def test_malformed_certificates_have_no_pin(self):
        certificate = ssl.PEM_cert_to_DER_cert(woof.throwaway_certificate(["localhost"])[0])
        table = [
            ("empty", b""),
            ("one octet", b"\x30"),
            ("cut short", certificate[:-1]),
            ("trailing bytes", certificate + b"\x00"),
            ("indefinite length", b"\x30\x80\x30\x00\x00\x00"),
            ("long form for a short length", b"\x30\x81\x02\x30\x00"),
            ("leading zero in the length", b"\x30\x82\x00\x02\x30\x00"),
            ("high tag number", b"\x1f\x01\x00"),
            ("not a SEQUENCE", b"\x31\x02\x30\x00"),
            ("empty tbsCertificate", b"\x30\x02\x30\x00"),
            ("no tbsCertificate", b"\x30\x03\x02\x01\x00"),
            ("child past its parent", b"\x30\x05\x30\x03\x02\x05\x00"),
            ("too few fields", woof.der_sequence(woof.der_sequence(
                woof.der_explicit(0, woof.der_integer(2)), *[woof.der_sequence()] * 5))),
        ]
        for name, data in table:
            with self.subTest(name):
                with self.assertRaises(woof.WoofError):
                    woof.public_key_pin(data)


class EcdsaTests(unittest.TestCase):

    def test_scalar_multiples_of_the_generator_are_the_published_points(self):
        gx, gy = woof.P256_G
        table = [
            (1, (gx, gy)),
            (2, (0x7CF27B188D034F7E8A52380304B51AC3C08969E277F21B35A60B48FC47669978,
                 0x07775510DB8ED040293D9AC69F7430DBBA7DADE63CE982299E04B79D227873D1)),
            (3, (0x5ECBE4D1A6330A44C8F7EF951D4BF165E6C6B721EFADA985FB41661BC6E7FD6C,
                 0x8734640C4998FF7E374B06CE1A64A2ECD82AB036384FB83D9A79B127A27D5032)),
            (112233445566778899,
             (0x339150844EC15234807FE862A86BE77977DBFB3AE3D96F4C22795513AEAAB82F,
              0xB1C14DDFDC8EC1B2583F51E85A5EB3A155840F2034730E9B5ADA38B674336A21)),
            (0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721,
             (0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6,
              0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299)),
            (woof.P256_N - 1, (gx, woof.P256_P - gy)),
        ]
        for scalar, expected in table:
            with self.subTest(scalar=scalar):
                self.assertEqual(woof.p256_multiply(scalar), expected)

    def test_the_whole_group_order_gives_the_point_at_infinity(self):
        with self.assertRaises(ValueError):
            woof.p256_multiply(woof.P256_N)

    def test_signatures_match_the_rfc_6979_vectors(self):
        private_key = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
        table = [
            (b"sample", 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
             0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8),
            (b"test", 0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
             0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083),
        ]
        for message, r, s in table:
            with self.subTest(message=message):
                self.assertEqual(woof.ecdsa_sign(private_key, message), (r, s))

    def test_signatures_of_random_keys_verify_and_forgeries_do_not(self):
        for attempt in range(8):
            with self.subTest(attempt=attempt):
                private_key = int.from_bytes(os.urandom(32), "big") % (woof.P256_N - 1) + 1
                public_point = woof.p256_multiply(private_key)
                self.assertEqual(public_point, affine_multiply(private_key, woof.P256_G))
                x, y = public_point
                self.assertEqual(y * y % woof.P256_P, (x * x * x - 3 * x + P256_B) % woof.P256_P)
                message = os.urandom(attempt * 10)
                r, s = woof.ecdsa_sign(private_key, message)
                self.assertTrue(ecdsa_signature_is_valid(public_point, message, r, s))
                self.assertFalse(ecdsa_signature_is_valid(public_point, message + b"!", r, s))
                self.assertFalse(ecdsa_signature_is_valid(public_point, message, r, woof.P256_N - s - 1))


class ThrowawayCertificateTestCase(WoofTestCase):

    def write_certificate(self, hosts=CERTIFICATE_HOSTS, lifetime=86400):
        """(certificate path, key path, certificate PEM) of a new throwaway certificate."""
        certificate_pem, key_pem = woof.throwaway_certificate(hosts, lifetime)
        certificate_path = self.make_file("cert.pem", certificate_pem.encode("ascii"))
        key_path = self.make_file("key.pem", key_pem.encode("ascii"))
        return certificate_path, key_path, certificate_pem


class ThrowawayCertificateTests(ThrowawayCertificateTestCase):

    def test_openssl_reads_the_certificate_as_intended(self):
        openssl = require_tool("openssl")
        before = time.time()
        certificate_path, _, _ = self.write_certificate()
        text = run_tool(self, openssl, "x509", "-noout", "-text", "-in", certificate_path).decode()
        for expected in ("Version: 3 (0x2)",
                         "Issuer: CN = woof.py throwaway",
                         "Subject: CN = woof.py throwaway",
                         "Public Key Algorithm: id-ecPublicKey",
                         "ASN1 OID: prime256v1",
                         "IP Address:192.168.1.20, IP Address:FD00:0:0:0:0:0:0:1, "
                         "DNS:localhost, DNS:myhost",
                         "X509v3 Basic Constraints: critical\n                CA:FALSE",
                         "X509v3 Key Usage: critical\n                Digital Signature\n",
                         "X509v3 Extended Key Usage: \n                TLS Web Server Authentication\n"):
            with self.subTest(expected=expected):
                self.assertIn(expected, text)
        self.assertEqual(text.count("Signature Algorithm: ecdsa-with-SHA256"), 2)
        not_before, not_after = certificate_validity(self, openssl, certificate_path)
        self.assertLessEqual(abs(not_before - (before - 3600)), 60)
        self.assertEqual(not_after - not_before, 86400 + 3600)

    def test_openssl_verifies_the_signature_and_refuses_an_altered_copy(self):
        openssl = require_tool("openssl")
        certificate_path, _, certificate_pem = self.write_certificate()
        output = run_tool(self, openssl, "verify", "-x509_strict", "-CAfile", certificate_path,
                          certificate_path)
        self.assertEqual(output.strip(), certificate_path.encode() + b": OK")
        der = ssl.PEM_cert_to_DER_cert(certificate_pem)
        altered = der.replace(b"woof.py throwaway", b"woof.py throwawaz", 1)
        self.assertNotEqual(altered, der)
        altered_path = self.make_file("altered.pem", ssl.DER_cert_to_PEM_cert(altered).encode())
        result = subprocess.run([openssl, "verify", "-CAfile", altered_path, altered_path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=DEADLINE)
        self.assertNotEqual(result.returncode, 0, result.stdout)

    def test_openssl_reads_the_key_and_it_matches_the_certificate(self):
        openssl = require_tool("openssl")
        certificate_path, key_path, _ = self.write_certificate()
        self.assertIn(b"valid", run_tool(self, openssl, "pkey", "-in", key_path, "-check", "-noout"))
        from_key = run_tool(self, openssl, "pkey", "-in", key_path, "-pubout")
        from_certificate = run_tool(self, openssl, "x509", "-in", certificate_path, "-pubkey", "-noout")
        self.assertEqual(from_key, from_certificate)
        self.assertIn(b"ASN1 OID: prime256v1",
                      run_tool(self, openssl, "pkey", "-in", key_path, "-noout", "-text"))

    def test_the_lifetime_and_hosts_are_the_callers(self):
        openssl = require_tool("openssl")
        certificate_path, key_path, _ = self.write_certificate(hosts=[], lifetime=600)
        text = run_tool(self, openssl, "x509", "-noout", "-text", "-in", certificate_path).decode()
        self.assertNotIn("Subject Alternative Name", text)
        not_before, not_after = certificate_validity(self, openssl, certificate_path)
        self.assertEqual(not_after - not_before, 600 + 3600)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate_path, key_path)

    def test_each_certificate_has_its_own_key_and_serial(self):
        openssl = require_tool("openssl")
        pins, serials = set(), set()
        for attempt in range(2):
            certificate_path, _, certificate_pem = self.write_certificate()
            pins.add(woof.public_key_pin(ssl.PEM_cert_to_DER_cert(certificate_pem)))
            serials.add(run_tool(self, openssl, "x509", "-noout", "-serial", "-in", certificate_path))
        self.assertEqual((len(pins), len(serials)), (2, 2))

    def test_pins_and_fingerprints_are_what_openssl_computes_for_any_key(self):
        openssl = require_tool("openssl")
        key_path = os.path.join(self.tmp, "rsa-key.pem")
        rsa_v3 = os.path.join(self.tmp, "rsa-v3.pem")
        run_tool(self, openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key_path,
                 "-out", rsa_v3, "-subj", "/CN=woof test", "-days", "1")
        request = run_tool(self, openssl, "req", "-new", "-key", key_path, "-subj", "/CN=woof v1")
        rsa_v1 = os.path.join(self.tmp, "rsa-v1.pem")
        run_tool(self, openssl, "x509", "-req", "-signkey", key_path, "-days", "1", "-out", rsa_v1,
                 input=request)
        throwaway, _, _ = self.write_certificate()
        for path, version in ((rsa_v3, b"Version: 3"), (rsa_v1, b"Version: 1"),
                              (throwaway, b"Version: 3")):
            with self.subTest(path=os.path.basename(path)):
                self.assertIn(version, run_tool(self, openssl, "x509", "-in", path, "-noout", "-text"))
                public_key_pem = run_tool(self, openssl, "x509", "-in", path, "-pubkey", "-noout")
                public_key_der = run_tool(self, openssl, "pkey", "-pubin", "-outform", "der",
                                          input=public_key_pem)
                expected_pin = "sha256//" + base64.b64encode(
                    hashlib.sha256(public_key_der).digest()).decode()
                fingerprint = run_tool(self, openssl, "x509", "-in", path, "-noout",
                                       "-fingerprint", "-sha256").decode()
                with open(path) as handle:
                    der = ssl.PEM_cert_to_DER_cert(handle.read())
                self.assertEqual(woof.public_key_pin(der), expected_pin)
                self.assertEqual(woof.certificate_fingerprint(der),
                                 fingerprint.strip().split("=", 1)[1])


class TlsServer:
    """A TLS server in a thread answering every request with one short HTTP response."""

    BODY = b"hello over tls\n"

    def __init__(self, certificate_path, key_path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate_path, key_path)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()

    def serve(self):
        while True:
            connection, _ = self.listener.accept()
            with connection:
                if self.stopping:
                    return
                connection.settimeout(DEADLINE)
                try:
                    self.answer(connection)
                except OSError:
                    pass  # clients refusing the certificate end the handshake

    def answer(self, connection):
        with self.context.wrap_socket(connection, server_side=True) as secure:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = secure.recv(4096)
                if not chunk:
                    return
                request += chunk
            secure.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                           % (len(self.BODY), self.BODY))

    def stop(self):
        self.stopping = True
        socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE).close()
        self.thread.join(DEADLINE)
        self.listener.close()


class ThrowawayCertificateTlsTests(ThrowawayCertificateTestCase):

    def serve(self):
        """A TLS server with a new throwaway certificate: (server, certificate PEM)."""
        certificate_path, key_path, certificate_pem = self.write_certificate(
            ["127.0.0.1", "localhost"])
        server = TlsServer(certificate_path, key_path)
        self.addCleanup(server.stop)
        return server, certificate_pem

    def fetch(self, server, context, server_hostname):
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as raw:
            with context.wrap_socket(raw, server_hostname=server_hostname) as secure:
                secure.sendall(b"GET / HTTP/1.0\r\n\r\n")
                response = b""
                while not response.endswith(TlsServer.BODY):
                    chunk = secure.recv(4096)
                    if not chunk:
                        break
                    response += chunk
        return response

    def test_python_trusts_the_certificate_for_its_address_and_name_only(self):
        server, certificate_pem = self.serve()
        for server_hostname in ("127.0.0.1", "localhost"):
            with self.subTest(server_hostname=server_hostname):
                context = ssl.create_default_context(cadata=certificate_pem)
                response = self.fetch(server, context, server_hostname)
                self.assertTrue(response.endswith(b"\r\n\r\n" + TlsServer.BODY), response)
        context = ssl.create_default_context(cadata=certificate_pem)
        with self.assertRaises((ssl.SSLError, ssl.CertificateError)):
            self.fetch(server, context, "elsewhere.example")
        other_pem, _ = woof.throwaway_certificate(["127.0.0.1"])
        with self.assertRaises(ssl.SSLError):
            self.fetch(server, ssl.create_default_context(cadata=other_pem), "127.0.0.1")

    def test_curl_accepts_the_pinned_key_and_refuses_another(self):
        curl = require_tool("curl")
        server, certificate_pem = self.serve()
        pin = woof.public_key_pin(ssl.PEM_cert_to_DER_cert(certificate_pem))
        url = "https://127.0.0.1:%d/" % server.port
        output = run_tool(self, curl, "-sS", "--max-time", "30", "--pinnedpubkey", pin, "-k", url)
        self.assertEqual(output, TlsServer.BODY)
        other_pin = woof.public_key_pin(ssl.PEM_cert_to_DER_cert(
            woof.throwaway_certificate(["127.0.0.1"])[0]))
        result = subprocess.run([curl, "-sS", "--max-time", "30", "--pinnedpubkey", other_pin,
                                 "-k", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=DEADLINE)
        self.assertEqual(result.returncode, 90, result.stderr)  # CURLE_SSL_PINNEDPUBKEYNOTMATCH
        self.assertEqual(result.stdout, b"")


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

def default_signals():
    """Run in a child before it starts (POSIX): SIGINT and SIGHUP as a shell
    gives them to a foreground command.  A suite started in the background
    or under nohup ignores them, and a child inherits what is ignored; woof
    rightly keeps an ignored signal ignored, so its signal tests would wait."""
    import signal
    for name in ("SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


CHILD_SIGNALS = {} if os.name == "nt" else {"preexec_fn": default_signals}


class WoofProcess:
    """woof.py run as users run it, in a subprocess; url is what it printed.

    With script=None, args go to Python itself (e.g. ["-c", code, ...]).
    """

    def __init__(self, test, args, stdin=None, script=WOOF_PATH, stderr=subprocess.PIPE,
                 env=None, **options):
        argv = [sys.executable] + ([script] if script else []) + list(args)
        options = dict(CHILD_SIGNALS, **options)
        self.process = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                        stderr=stderr, env=env, **options)
        test.addCleanup(self.close)
        self.lines = queue.Queue()
        reader = threading.Thread(target=self.read_stdout)
        reader.daemon = True
        reader.start()
        line = self.lines.get(timeout=DEADLINE)
        if line is None or not re.search(" on https?://", line):
            self.process.kill()
            raise AssertionError("woof printed %r; stderr: %r" % (line, self.process.stderr.read()))
        self.url = line.split(" on ", 1)[1].strip()
        self.port = urllib.parse.urlsplit(self.url).port

    def read_stdout(self):
        for line in self.process.stdout:
            self.lines.put(line.decode("utf-8", "replace"))
        self.lines.put(None)

    def wait(self, timeout=DEADLINE):
        return self.process.wait(timeout)

    def finish(self):
        """Wait for the exit; return (status, stderr text, "" when stderr was not a pipe)."""
        self.process.wait(DEADLINE)
        stderr = self.process.stderr.read() if self.process.stderr else b""
        return self.process.returncode, stderr.decode("utf-8", "replace")

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


class CommandLineTests(WoofTestCase):

    def run_main(self, args, config_paths=()):
        """main() in-process; return (status, stderr text)."""
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = woof.main(args, config_paths=config_paths)
        return status, stderr.getvalue()

    def test_woof_serves_with_a_shorter_thread_switch_interval_then_gives_it_back(self):
        path = self.make_file("f.txt", b"switch")
        before = sys.getswitchinterval()
        self.assertNotEqual(before, woof.THREAD_SWITCH_INTERVAL)
        urls, seen = queue.Queue(), []

        class Announced(io.StringIO):
            def write(self, text):
                for url in re.findall(r"http://127[.]0[.]0[.]1:[0-9]+/\S*", text):
                    urls.put(url)
                return super().write(text)

        def download_twice():
            url = urls.get(timeout=DEADLINE)
            for _ in range(2):
                with urllib.request.urlopen(url, timeout=DEADLINE) as response:
                    self.assertEqual(response.read(), b"switch")
                    seen.append(sys.getswitchinterval())  # woof waits for the second

        client = threading.Thread(target=download_twice)
        client.start()
        with contextlib.redirect_stdout(Announced()):
            status, stderr = self.run_main(["-c", "2", "-p", "0", "-i", "127.0.0.1", path])
        client.join(DEADLINE)
        self.assertEqual(status, 0, stderr)
        self.assertEqual(seen[0], woof.THREAD_SWITCH_INTERVAL)
        self.assertEqual(sys.getswitchinterval(), before)

    def assert_error_is_last_line(self, status, stderr, expected_status, *fragments):
        """main() returned expected_status and stderr ends in "woof: error: ..."
        holding each fragment (lines before it allowed, no traceback)."""
        self.assertEqual(status, expected_status, stderr)
        self.assertNotIn("Traceback", stderr)
        last = stderr.strip().splitlines()[-1]
        self.assertRegex(last, r"^woof(\.py)?: error: ")
        for fragment in fragments:
            self.assertIn(fragment, last)

    def test_wrong_flags_and_values_are_usage_errors(self):
        path = self.make_file("f.txt")
        table = [["--bogus", path], ["-c", "-1", path], ["--expire", "0", path], ["--expire", "5x", path], ["-c", "x", path], ["-p", "70000", path],
                 ["-p", "http", path], [], ["-z", "-Z", path], ["--timeout", "0", path],
                 ["--timeout", "inf", path], ["--timeout", "nan", path],
                 ["--timeout", "86401", path]]
        for args in table:
            with self.subTest(args=args):
                status, stderr = self.run_main(args)
                self.assert_error_is_last_line(status, stderr, 2)
                self.assertEqual(stderr.count("\n"), 1, stderr)

    def test_arguments_that_do_not_go_together_are_usage_errors(self):
        path = self.make_file("f.txt")
        table = [
            (["-", path], "only be offered alone"),
            (["-s", path], "-s offers woof.py itself"),
            (["--name", "../evil", path], "--name must be a plain file name"),
            (["--name", "a/b", path], "--name must be a plain file name"),
            (["--name", "", path], "--name must be a plain file name"),
            (["-U", self.tmp, path], "give no FILE"),
            (["-U", self.tmp, "-s"], "give no FILE"),
            (["-U", self.tmp, "--name", "x"], "give no FILE"),
            (["-U", self.tmp, "--upload-dir", os.path.join(self.tmp, "other")], "two folders"),
            (["--max-upload", "2G", path], "only applies when receiving"),
            (["--key", "k.pem", path], "--key goes with --cert"),
        ]
        for args, fragment in table:
            with self.subTest(args=args):
                status, stderr = self.run_main(["-p", "0"] + args)
                self.assert_error_is_last_line(status, stderr, 2, fragment)
                self.assertEqual(stderr.count("\n"), 1, stderr)

    def test_a_wrong_timeout_says_which_values_are_allowed(self):
        status, stderr = self.run_main(["--timeout", "0", self.make_file("f")])
        self.assert_error_is_last_line(status, stderr, 2, "more than 0 and at most 86400 seconds")

    def test_missing_or_unusable_files_are_one_line_errors(self):
        table = [
            ([os.path.join(self.tmp, "absent.txt")], "absent.txt"),
            (["-i", "no such host.invalid", self.make_file("z.txt")], "no such host"),
            (["-U", os.path.join(self.tmp, "absent")], "is not a folder"),
        ]
        for args, fragment in table:
            with self.subTest(args=args):
                status, stderr = self.run_main(["-p", "0"] + args)
                self.assert_error_is_last_line(status, stderr, 1, fragment)

    @unittest.skipIf(os.name == "nt", "needs a POSIX shell to close standard input")
    def test_offering_a_closed_standard_input_is_a_one_line_error(self):
        # `<&-` closes descriptor 0 itself; stdin=DEVNULL would leave it open.
        command = 'exec "$0" "$1" -i 127.0.0.1 -p 0 - <&-'
        result = subprocess.run(["sh", "-c", command, sys.executable, WOOF_PATH],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DEADLINE)
        stderr = result.stderr.decode("utf-8", "replace")
        self.assert_error_is_last_line(result.returncode, stderr, 1, "standard input is closed")
        self.assertEqual(len(stderr.splitlines()), 1, stderr)
        self.assertEqual(result.stdout, b"")

    def test_a_port_in_use_is_named_with_what_to_do(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            status, stderr = self.run_main(["-i", "127.0.0.1", "-p", str(port), self.make_file("f")])
        self.assert_error_is_last_line(status, stderr, 1, "port %d is already in use" % port, "-p")

    def test_a_bad_woofrc_is_a_one_line_error(self):
        config = self.make_file("woofrc", b"[main]\ncount = -1\n")
        status, stderr = self.run_main([self.make_file("f")], config_paths=[config])
        self.assert_error_is_last_line(status, stderr, 1, config, "count")

    def test_version_and_help(self):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.assertEqual(woof.main(["--version"], config_paths=()), 0)
            self.assertEqual(woof.main(["-h"], config_paths=()), 0)
        self.assertIn(woof.__version__, stdout.getvalue())
        self.assertIn("examples", stdout.getvalue())
        self.assertIn("~/.woofrc", stdout.getvalue())

    @unittest.skipIf(os.name == "nt", "Windows has no execute bit nor shebang")
    def test_help_works_as_typed_and_fits_80_columns(self):
        self.assertTrue(os.access(WOOF_PATH, os.X_OK), "woof.py is not executable")
        environ = dict(os.environ, COLUMNS="200")
        result = subprocess.run(["./woof.py", "--help"], cwd=HERE, env=environ,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=DEADLINE)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        lines = result.stdout.splitlines()
        self.assertEqual([line for line in lines if len(line) > 80], [])
        for heading in ("offering:", "folders:", "receiving:", "reaching the other side:",
                        "output:"):
            self.assertIn(heading, lines)
        first = next(number for number, line in enumerate(lines) if line.startswith("examples"))
        examples = lines[first + 1:lines.index("", first)]
        commands = [line for line in examples if "woof.py" in line]
        self.assertGreater(len(commands), 8)
        for line in commands:
            self.assertIn(" python3 woof.py ", line)
        self.assertIn("type py woof.py", lines[first])
        self.assertRegex(result.stdout, r"exit status: 0 done, 1 error, 2 wrong usage, 3 ")
        self.assertRegex(result.stdout, r"130 stopped with Ctrl-C, 143 by SIGTERM, 129 by SIGHUP")
        self.assertIn("-Z                      .zip: for Windows recipients", result.stdout)

    def test_help_shows_the_defaults_the_woofrc_files_set(self):
        config = self.make_file("woofrc", b"[main]\nport = 9000\ncount = 3\nip = 10.1.2.3\n"
                                          b"compressed = zip\nqr = yes\n")
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.assertEqual(woof.main(["--help"], config_paths=[config]), 0)
        text = " ".join(stdout.getvalue().split())
        for shown in ("(default 9000)", "0 for no limit (default 3)", "(default: 10.1.2.3)",
                      "Default: .zip (from woofrc)", "for a phone's camera (on in woofrc)"):
            self.assertIn(shown, text)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.assertEqual(woof.main(["--help"], config_paths=()), 0)
        text = " ".join(stdout.getvalue().split())
        for shown in ("(default 8080)", "(default 1)", "(default: every address)",
                      "Default: .tar.gz."):
            self.assertIn(shown, text)

    def test_options_may_follow_the_file(self):
        parser = woof.build_parser()
        args = woof.parse_command_line(parser, ["file.txt", "-c", "3", "-p", "0", "-q"])
        self.assertEqual((args.paths, args.count, args.port, args.quiet), (["file.txt"], 3, 0, True))

    def test_options_and_paths_mix_in_any_order_on_every_python(self):
        table = [
            (["a.pdf", "-p", "0", "b.txt"], ["a.pdf", "b.txt"], 0, None),
            (["-c", "3", "a", "-q", "b", "-p", "0", "c"], ["a", "b", "c"], 0, 3),
            (["a", "-p", "1", "--", "-b"], ["a", "-b"], 1, None),
            (["-", "-c", "1"], ["-"], None, 1),
            (["--", "-x"], ["-x"], None, None),
        ]
        for argv, paths, port, count in table:
            with self.subTest(argv=argv):
                args = woof.parse_command_line(woof.build_parser(), argv)
                self.assertEqual((args.paths, args.port, args.count), (paths, port, count))

    def test_an_unknown_option_after_the_paths_is_a_usage_error(self):
        path = self.make_file("f.txt")
        status, stderr = self.run_main([path, "-p", "0", path, "--bogus"])
        self.assert_error_is_last_line(status, stderr, 2, "--bogus")

    def test_woof_serves_a_file_and_exits_0(self):
        data = os.urandom(100000)
        path = self.make_file("\u00e9t\u00e9 #1.bin", data)
        woof_run = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", path])
        url = woof_run.url
        self.assertTrue(url.startswith("http://127.0.0.1:"))
        self.assertTrue(url.endswith("/%C3%A9t%C3%A9%20%231.bin"))
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            self.assertEqual(response.read(), data)
        status, stderr = woof_run.finish()
        self.assertEqual(status, 0, stderr)
        self.assertIn("download 1 of 1 complete", stderr)

    def test_woof_offers_standard_input_under_a_name(self):
        woof_run = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", "-q", "--name", "notes.txt", "-"],
                               stdin=subprocess.PIPE)
        woof_run.process.stdin.write(b"from a pipe\n")
        woof_run.process.stdin.close()
        url = woof_run.url
        self.assertTrue(url.endswith("/notes.txt"))
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            self.assertEqual(response.read(), b"from a pipe\n")
        status, stderr = woof_run.finish()
        self.assertEqual((status, stderr), (0, ""))

    def test_woof_offers_itself_with_s(self):
        woof_run = WoofProcess(self, ["-s", "-i", "127.0.0.1", "-p", "0"])
        url = woof_run.url
        self.assertTrue(url.endswith("/woof.py"))
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            with open(WOOF_PATH, "rb") as source:
                self.assertEqual(response.read(), source.read())
        self.assertEqual(woof_run.finish()[0], 0)

    def test_a_file_named_like_an_option_gets_a_hint(self):
        self.make_file("-notes.txt")
        result = subprocess.run([sys.executable, WOOF_PATH, "-p", "0", "-notes.txt"],
                                cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.decode().replace("\r\n", "\n"),  # Windows' text mode
                         "woof: error: unrecognized arguments: -notes.txt; for the file, write "
                         "-- -notes.txt or ./-notes.txt (see --help)\n")

    @unittest.skipIf(os.name == "nt", "no SIGINT to a child on Windows")
    def test_ctrl_c_exits_130_with_one_line(self):
        import signal
        woof_run = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", self.make_file("f")])
        woof_run.process.send_signal(signal.SIGINT)
        status, stderr = woof_run.finish()
        self.assertEqual(status, 130)
        self.assertEqual(stderr.strip().splitlines()[-1], "woof: interrupted")
        self.assertNotIn("Traceback", stderr)


    @unittest.skipIf(os.name == "nt", "no SIGINT or SIGTERM to a child on Windows")
    def test_a_stop_logs_the_transfers_in_flight_as_aborted_and_what_was_sent(self):
        import signal
        curl = require_tool("curl")
        data = os.urandom(1 << 20) * 16
        path = self.make_file("big.bin", data)
        for name, last in (("SIGTERM", "woof: stopped by SIGTERM"),
                           ("SIGINT", "woof: interrupted")):
            with self.subTest(signal=name):
                log_path = os.path.join(self.tmp, "stderr-%s" % name)
                with open(log_path, "wb") as log:
                    child = WoofProcess(self, ["-c", "0", "-i", "127.0.0.1", "-p", "0", path],
                                        stderr=log)
                with urllib.request.urlopen(child.url, timeout=DEADLINE) as response:
                    self.assertEqual(response.read(), data)

                def log_text():
                    with open(log_path, "rb") as log:
                        return log.read().decode("utf-8", "replace")

                # Counted and logged a moment after the client has it all.
                wait_until(lambda: "complete" in log_text(), message="the first download's line")
                partial = os.path.join(self.tmp, "partial-%s" % name)
                slow = subprocess.Popen([curl, "-sS", "--limit-rate", "200K", "-o", partial,
                                         child.url], stderr=subprocess.DEVNULL)
                self.addCleanup(slow.wait)
                self.addCleanup(slow.kill)
                wait_until(lambda: os.path.exists(partial) and os.path.getsize(partial) > 0,
                           message="the slow download to begin")
                child.process.send_signal(getattr(signal, name))
                status, _ = child.finish()
                stderr = log_text()
                lines = stderr.splitlines()
                self.assertEqual(lines[-1], last, stderr)
                # The count may lag what curl has by the one sendfile call in
                # progress when the signal came: it can still read "0 B".
                self.assertRegex(lines[-3], r"^\[[0-9:]+\] 127\.0\.0\.1 big\.bin [0-9.]+ "
                                            r"(B|KiB|MiB) in .* aborted: woof was stopped$")
                self.assertRegex(lines[-2], r"^\[[0-9:]+\] done: sent big\.bin \(16\.0 MiB\) "
                                            r"to 127\.0\.0\.1 in ")


class UploadCommandLineTest(UploadTestCase):
    def test_upload_options_make_settings(self):
        table = [(["-U"], os.path.abspath("."), None), (["-U", "in"], os.path.abspath("in"), None),
                 (["--upload-dir", "in", "--max-upload", "2G"], os.path.abspath("in"), 2 << 30),
                 (["-q", "-U", "in", "--upload-dir", "in/"], os.path.abspath("in"), None),
                 (["-c", "3", "-U"], os.path.abspath("."), None)]
        for argv, folder, largest in table:
            with self.subTest(argv=argv):
                args = woof.parse_command_line(woof.build_parser(), argv)
                settings = woof.settings_from(args)
                self.assertEqual((settings.upload_dir, settings.max_upload), (folder, largest))

    def test_mistakes_are_one_line_errors(self):
        missing = os.path.join(self.tmp, "missing")
        photo = self.make_file("photo.jpg")
        table = [(["-U", missing], 1, "is not a folder"),
                 (["-U", photo], 1, "photo.jpg is not a folder: -U receives files into a "
                                    "folder; to send a file to another woof, run woof.py URL "
                                    "FILE"),
                 (["-U", self.inbox, "x.txt"], 2, "give no FILE"),
                 (["-U", self.inbox, "--upload-dir", self.tmp], 2, "name two folders"),
                 (["--max-upload", "2G", "x.txt"], 2, "only applies when receiving"),
                 (["-U", self.inbox, "--max-upload", "lots"], 2, "is not a size")]
        for argv, status, message in table:
            with self.subTest(argv=argv):
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    self.assertEqual(woof.main(argv, config_paths=()), status)
                self.assertIn(message, stderr.getvalue())
                self.assertNotIn("Traceback", stderr.getvalue())

    def test_woof_receives_with_curl_and_exits(self):
        curl = require_tool("curl")
        child = WoofProcess(self, ["-U", self.inbox, "-c", "4", "-i", "127.0.0.1",
                                   "-p", "0"])
        self.assertEqual(child.url, "http://127.0.0.1:%d/" % child.port)
        photo_data = os.urandom(2 << 20)
        photo = self.make_file("ph\u00f6to.jpg", photo_data)
        other = self.make_file("other.txt", b"other")
        def curl_output(*args, **kwargs):
            return subprocess.check_output([curl, "-sS", "--fail"] + list(args), **kwargs)
        self.assertEqual(curl_output("-F", "file=@" + photo, "-F", "x=@" + other, child.url),
                         saved_line("ph\u00f6to.jpg", "2.0 MiB", photo_data)
                         + saved_line("other.txt", "5 B", b"other"))
        self.assertEqual(curl_output("-F", "upfile=@" + other, child.url),
                         saved_line("other (1).txt", "5 B", b"other"))
        answer = curl_output("-i", "-T", photo, child.url).decode("utf-8")
        self.assertIn("HTTP/1.1 201 Created", answer)
        self.assertIn("Location: /ph%C3%B6to%20%281%29.jpg", answer)
        with open(photo, "rb") as source:
            self.assertEqual(curl_output("-T", "-", child.url + "piped.bin", stdin=source),
                             saved_line("piped.bin", "2.0 MiB", photo_data))
        self.assertEqual(child.wait(), 0)
        with open(photo, "rb") as source:
            data = source.read()
        self.assertEqual(self.inbox_files(), {"ph\u00f6to.jpg": data, "other.txt": b"other",
                                              "other (1).txt": b"other",
                                              "ph\u00f6to (1).jpg": data, "piped.bin": data})
        log = child.process.stderr.read().decode("utf-8")
        self.assertIn("127.0.0.1 saved piped.bin (2.0 MiB in", log)
        self.assertIn("upload 4 of 4 complete", log)

    @unittest.skipIf(os.name == "nt", "no SIGTERM or SIGHUP to a child on Windows")
    def test_sigterm_and_sighup_remove_uploads_in_progress_and_exit_128_plus_the_signal(self):
        import signal
        head = b"PUT /half.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
        for name in ("SIGTERM", "SIGHUP"):
            number = getattr(signal, name)
            with self.subTest(signal=name):
                child = WoofProcess(self, ["-U", self.inbox, "-q", "-i", "127.0.0.1", "-p", "0"])
                raw = socket.create_connection(("127.0.0.1", child.port), timeout=DEADLINE)
                self.addCleanup(raw.close)
                raw.sendall(head + b"x" * (4 << 20))
                wait_until(lambda: os.listdir(self.inbox), message="a temporary file")
                child.process.send_signal(number)
                status, stderr = child.finish()
                self.assertEqual(status, 128 + number, stderr)
                self.assertEqual(stderr, "woof: stopped by %s\n" % name)
                self.assertEqual(os.listdir(self.inbox), [])

    @unittest.skipUnless(hasattr(os, "kill") and os.name != "nt", "needs SIGHUP")
    def test_a_sighup_ignored_as_by_nohup_stays_ignored(self):
        import signal
        code = ("import runpy, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
        child = WoofProcess(self, ["-c", code, WOOF_PATH, "-U", self.inbox, "-i", "127.0.0.1",
                                   "-p", "0"], script=None)
        child.process.send_signal(signal.SIGHUP)
        request = urllib.request.Request(child.url + "after.txt", data=b"after the hangup",
                                         method="PUT")
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            self.assertEqual(response.status, 201)
        status, stderr = child.finish()
        self.assertEqual(status, 0, stderr)
        self.assertEqual(self.inbox_files(), {"after.txt": b"after the hangup"})

    def test_main_gives_back_the_signal_handlers_it_found(self):
        import signal
        numbers = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGBREAK")
                   if hasattr(signal, name)]
        before = [signal.getsignal(number) for number in numbers]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = woof.main(["-U", os.path.join(self.tmp, "missing")], config_paths=())
        self.assertEqual(status, 1, stderr.getvalue())
        self.assertEqual([signal.getsignal(number) for number in numbers], before)


# ---------------------------------------------------------------------------
# The URLs woof prints, inside network namespaces built for each case
# ---------------------------------------------------------------------------

# Holds a tun interface open (TUNSETIFF, IFF_TUN | IFF_NO_PI: linux/if_tun.h)
# so that it has a carrier, as under a running VPN client, until stdin closes.
TUN_HOLDER = """
import fcntl, os, struct, sys
descriptor = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(descriptor, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x1001))
print("ready", flush=True)
sys.stdin.read()
"""

# What woof itself finds in a namespace's kernel tables, before ranking.
KERNEL_ADDRESSES = """
import json, socket, sys
sys.path.insert(0, %r)
import woof
found = woof.kernel_table_addresses((socket.AF_INET, socket.AF_INET6))
print(json.dumps([[local.interface, local.address, local.point_to_point] for local in found]))
""" % HERE

# The fallback used where the kernel's tables cannot be read.
FALLBACK_HOSTS = """
import json, socket, sys
sys.path.insert(0, %r)
import woof
found = woof.host_name_addresses((socket.AF_INET, socket.AF_INET6), "localhost")
print(json.dumps(woof.ranked_hosts(found)))
""" % HERE


def printed_lines(lead, port, path, hosts):
    """What woof should print: "LEAD on URL", then "or URL  (note)" under "on"."""
    lines = []
    for host, note in hosts:
        url = "http://%s:%d%s" % (host, port, path)
        if not lines:
            lines.append("%s on %s" % (lead, url))
        else:
            lines.append("%s or %s%s" % (" " * len(lead), url, "  (%s)" % note if note else ""))
    return lines


class NamespaceTests(WoofTestCase):
    """woof.py run in a network namespace of its own, whose interfaces are
    veth pairs with both ends inside, bridges and tun devices: nothing the
    namespace holds can send a packet out of it."""

    def setUp(self):
        super().setUp()
        if getattr(os, "geteuid", lambda: -1)() != 0:
            skip_or_fail("network namespaces need root")
        if shutil.which("ip") is None:
            skip_or_fail("ip (iproute2) is not installed")
        self.namespace = "woof-%d-%s" % (os.getpid(), os.urandom(4).hex())
        added = subprocess.run(["ip", "netns", "add", self.namespace], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=DEADLINE)
        if added.returncode != 0:
            skip_or_fail("cannot create a network namespace: %s" % added.stderr.strip())
        self.addCleanup(self.command, ["ip", "netns", "delete", self.namespace])
        self.ip("link", "set", "lo", "up")
        self.offered = self.make_file("f.txt")

    def command(self, argv):
        """Run argv; return its stdout, or fail with its stderr."""
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=DEADLINE)
        if done.returncode != 0:
            raise AssertionError("%s failed: %s" % (" ".join(argv), done.stderr.strip()))
        return done.stdout

    def inside(self, argv):
        return ["ip", "netns", "exec", self.namespace] + list(argv)

    def ip(self, *args):
        return self.command(["ip", "-n", self.namespace] + list(args))

    def veth(self, interface, peer):
        """A veth pair inside the namespace, both ends up (so both have a carrier)."""
        self.ip("link", "add", interface, "type", "veth", "peer", "name", peer)
        self.ip("link", "set", interface, "up")
        self.ip("link", "set", peer, "up")

    def bridge(self, name, port, container_end):
        """A bridge with one veth port, as Docker or libvirt make them, up."""
        self.ip("link", "add", name, "type", "bridge")
        self.veth(port, container_end)
        self.ip("link", "set", port, "master", name)
        self.ip("link", "set", name, "up")

    def address(self, interface, address, *options):
        self.ip("address", "add", address, "dev", interface, *options)

    def kernel_addresses(self):
        return json.loads(self.command(self.inside([sys.executable, "-c", KERNEL_ADDRESSES])))

    def run_woof(self, args):
        """woof.py's stdout lines once it has started in the namespace (then it is killed)."""
        process = subprocess.Popen(self.inside([sys.executable, WOOF_PATH] + args),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stderr = b""
        try:
            end = time.monotonic() + DEADLINE
            while b"Ctrl-C to stop" not in stderr:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("woof did not start; stderr: %r" % stderr)
                if select.select([process.stderr], [], [], remaining)[0]:
                    chunk = os.read(process.stderr.fileno(), 4096)
                    if not chunk:
                        raise AssertionError("woof exited; stderr: %r" % stderr)
                    stderr += chunk
        finally:
            process.kill()
            stdout, _ = process.communicate()
        # The offered file's SHA-256 line comes when ready, maybe before the kill.
        return [line for line in stdout.decode("utf-8").splitlines()
                if not re.match(r"[0-9a-f]{64}  ", line)]

    def assert_printed(self, args, hosts, lead="Now serving", path="/f.txt"):
        lines = self.run_woof(args)
        port = urllib.parse.urlsplit(lines[0].split(" on ", 1)[1]).port if lines else None
        self.assertEqual(lines, printed_lines(lead, port, path, hosts))

    def build_lan_and_vpns(self):
        """eth0 on a LAN; wg0 (CGNAT address) holds the default route; tun1 another VPN."""
        self.veth("tun1", "peer1")
        self.address("tun1", "10.8.0.6/24")
        self.veth("wg0", "peer2")
        self.address("wg0", "100.64.0.7/10")
        self.ip("route", "add", "default", "dev", "wg0")
        self.veth("eth0", "peer0")
        self.address("eth0", "192.168.50.2/24")
        self.address("eth0", "fd00:50::2/64", "nodad")

    def test_the_lan_comes_first_and_a_vpn_holding_the_default_route_last(self):
        self.build_lan_and_vpns()
        self.assert_printed(["-p", "0", self.offered],
                            [("192.168.50.2", ""), ("[fd00:50::2]", ""), ("100.64.0.7", "VPN"),
                             ("10.8.0.6", "VPN")])

    def test_receiving_prints_the_same_urls(self):
        self.build_lan_and_vpns()
        self.assert_printed(["-p", "0", "-U", self.tmp],
                            [("192.168.50.2", ""), ("[fd00:50::2]", ""), ("100.64.0.7", "VPN"),
                             ("10.8.0.6", "VPN")], lead="Now receiving", path="/")

    def test_a_server_bound_to_ipv4_or_to_one_address_prints_only_those(self):
        self.build_lan_and_vpns()
        table = [(["-i", "0.0.0.0"],
                  [("192.168.50.2", ""), ("100.64.0.7", "VPN"), ("10.8.0.6", "VPN")]),
                 (["-i", "192.168.50.2"], [("192.168.50.2", "")]),
                 (["-i", "100.64.0.7"], [("100.64.0.7", "")]),
                 (["-i", "fd00:50::2"], [("[fd00:50::2]", "")])]
        for args, hosts in table:
            with self.subTest(args=args):
                self.assert_printed(args + ["-p", "0", self.offered], hosts)

    def test_the_host_name_fallback_finds_the_default_route_address(self):
        self.build_lan_and_vpns()
        hosts = json.loads(self.command(self.inside([sys.executable, "-c", FALLBACK_HOSTS])))
        self.assertEqual(hosts, [["100.64.0.7", "VPN"]])

    def test_without_a_default_route_the_lan_addresses_are_printed_not_loopback(self):
        self.veth("eth0", "peer0")
        self.address("eth0", "192.168.60.2/24")
        self.veth("eth1", "peer1")
        self.address("eth1", "10.60.0.2/24")
        self.veth("eth2", "peer2")  # unplugged: its peer down, it has no carrier
        self.ip("link", "set", "peer2", "down")
        self.address("eth2", "10.61.0.2/24")
        self.assertEqual(self.ip("route", "show", "default").strip(), "")
        self.assert_printed(["-p", "0", self.offered], [("192.168.60.2", ""), ("10.60.0.2", "")])

    def test_container_and_virtual_machine_bridges_are_left_out(self):
        self.veth("eth0", "peer0")
        self.address("eth0", "192.168.70.2/24")
        self.ip("route", "add", "default", "via", "192.168.70.1")
        self.bridge("docker0", "veth1a2b3c", "ceth0")
        self.address("docker0", "172.17.0.1/16")
        self.address("docker0", "fd00:d0c::1/64", "nodad")
        self.bridge("br-5e1f0a2b3c4d", "vethdeadbee", "ceth1")
        self.address("br-5e1f0a2b3c4d", "172.18.0.1/16")
        self.bridge("virbr0", "vethf00", "ceth2")
        self.address("virbr0", "192.168.122.1/24")
        self.veth("veth0a0b0c", "ceth3")
        self.address("veth0a0b0c", "172.19.0.1/16")
        found = [(interface, address) for interface, address, _ in self.kernel_addresses()]
        for carried in [("docker0", "172.17.0.1"), ("docker0", "fd00:d0c::1"),
                        ("br-5e1f0a2b3c4d", "172.18.0.1"), ("virbr0", "192.168.122.1"),
                        ("veth0a0b0c", "172.19.0.1")]:
            self.assertIn(carried, found)  # up, with a carrier: left out by name alone
        self.assert_printed(["-p", "0", self.offered], [("192.168.70.2", "")])

    def test_ipv6_only_prints_stable_addresses_in_brackets_without_link_local(self):
        self.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        # Duplicate address detection on eth0 waits an hour for an answer, so
        # an address added without nodad stays tentative throughout the test.
        retransmit = "/proc/sys/net/ipv6/neigh/eth0/retrans_time_ms"
        self.command(self.inside([sys.executable, "-c", "open(%r, 'w').write('3600000')"
                                  % retransmit]))
        self.ip("link", "set", "eth0", "up")
        self.ip("link", "set", "peer0", "up")
        self.address("eth0", "fd00:80::2/64", "nodad")
        self.address("eth0", "2001:db8:80::2/64", "nodad")
        self.address("eth0", "fd00:80::dead/64", "nodad", "preferred_lft", "0")
        self.address("eth0", "fd00:80::7/64")
        self.ip("-6", "route", "add", "default", "via", "fd00:80::1", "dev", "eth0")
        self.veth("eth1", "peer1")
        self.address("eth1", "fd00:81::2/64", "nodad")
        kernel = {}  # address: (interface, flags), as /proc/net/if_inet6 lists them
        for line in self.command(self.inside(["cat", "/proc/net/if_inet6"])).splitlines():
            fields = line.split()
            address = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
            kernel[address] = (fields[5], int(fields[4], 16))
        self.assertIn("eth0", [interface for address, (interface, _) in kernel.items()
                               if address.startswith("fe80:")])
        self.assertTrue(kernel["fd00:80::dead"][1] & woof.IFA_F_DEPRECATED)
        self.assertTrue(kernel["fd00:80::7"][1] & woof.IFA_F_TENTATIVE)
        self.assertNotIn("inet ", self.ip("-4", "address", "show", "dev", "eth0"))
        self.assert_printed(["-p", "0", self.offered],
                            [("[fd00:80::2]", ""), ("[2001:db8:80::2]", ""), ("[fd00:81::2]", "")])

    def test_nothing_but_loopback_prints_127_0_0_1(self):
        self.assert_printed(["-p", "0", self.offered], [("127.0.0.1", "")])

    def release(self, holder):
        """Let the tun holder end, closing its tun device."""
        holder.stdin.close()
        holder.wait(DEADLINE)
        holder.stdout.close()

    def test_a_point_to_point_tunnel_is_a_vpn_whatever_its_name(self):
        if not os.path.exists("/dev/net/tun"):
            skip_or_fail("/dev/net/tun is missing")
        holder = subprocess.Popen(self.inside([sys.executable, "-c", TUN_HOLDER, "corp0"]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(self.release, holder)
        self.assertEqual(holder.stdout.readline(), b"ready\n")
        self.ip("link", "set", "corp0", "up")
        self.address("corp0", "10.8.0.6/24")
        self.veth("eth0", "peer0")
        self.address("eth0", "192.168.50.2/24")
        self.assertIn(["corp0", "10.8.0.6", True], self.kernel_addresses())
        self.assert_printed(["-p", "0", self.offered], [("192.168.50.2", ""), ("10.8.0.6", "VPN")])


# ---------------------------------------------------------------------------
# Reaching the right person, and only them: secret link, password, HTTPS,
# expiry, Host and Origin
# ---------------------------------------------------------------------------

def basic_header(password, user="anyone"):
    credentials = ("%s:%s" % (user, password)).encode("utf-8")
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}


def make_certificate(test, folder, name="server", hosts="IP:127.0.0.1,IP:::1,DNS:localhost"):
    """An RSA certificate and key made by openssl; return (certificate, key) paths."""
    openssl = require_tool("openssl")
    certificate = os.path.join(folder, name + ".pem")
    key = os.path.join(folder, name + ".key")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=woof test", "-addext", "subjectAltName=" + hosts,
                    "-keyout", key, "-out", certificate], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=DEADLINE)
    return certificate, key


def unverified_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SecretLinkTests(UploadTestCase):

    def test_only_the_secret_link_serves_and_every_other_path_is_one_plain_404(self):
        token = woof.new_secret_token()
        self.assertGreaterEqual(len(base64.urlsafe_b64decode(token + "==")), 16)
        data = os.urandom(5000)
        run = self.start(self.make_file("report.pdf", data), secret=token, count=0)
        self.assertEqual(run.server.offer_path, "/%s/report.pdf" % token)
        response, body = self.request(run)
        self.assert_response(response, body, 200, body=data)
        wrong = ["/", "/report.pdf", "/favicon.ico", "/robots.txt", "/%s/report.pdf" % token[:-1],
                 "/%sx/report.pdf" % token, "/%s/report.pdf" % token.swapcase(),
                 "/x/%s/report.pdf" % token,
                 "/report.pdf?%s" % token, "/.well-known/security.txt"]
        answers = set()
        for path in wrong:
            for method in ("GET", "HEAD"):
                with self.subTest(path=path, method=method):
                    response, body = self.request(run, method, path)
                    self.assertEqual(response.status, 404)
                    headers = sorted((name, value) for name, value in response.getheaders()
                                     if name != "Date")
                    answers.add((method, body, tuple(headers)))
                    self.assertNotIn(token, repr(headers) + body.decode("latin-1"))
        self.assertEqual(len(answers), 2, answers)  # one answer for GET, one for HEAD
        for path in ("/" + token, "/%s/" % token, "/%s/other.pdf" % token):
            with self.subTest(path=path):
                response, body = self.request(run, path=path)
                self.assert_response(response, body, 302,
                                     {"Location": "/%s/report.pdf" % token})
        self.assertFalse(run.done(), "no wrong path may count")
        encoded = "".join("%%%02X" % ord(char) for char in token)
        response, body = self.request(run, path="/%s/report.pdf" % encoded)
        self.assert_response(response, body, 200, body=data)
        raw = self.raw_exchange(run, b"GET /%s/f a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                                % token.encode())
        self.assertIn(b" 400 ", raw)
        wait_until(lambda: "Bad request" in self.log_text(), message="the 400's log line")
        self.assertNotIn(token, self.log_text())
        self.assertNotIn(encoded, self.log_text())
        self.assertIn("<secret>", self.log_text())

    def test_uploads_need_the_secret_link_for_the_page_the_form_and_put(self):
        token = woof.new_secret_token()
        run = self.receive(secret=token, count=3)
        response, body = self.request(run, path="/%s/" % token)
        self.assert_response(response, body, 200)
        self.assertIn(b"<form", body)
        for method, path in (("PUT", "/x.txt"), ("PUT", "/%s.txt" % token), ("POST", "/"),
                             ("GET", "/"), ("PUT", "/%s" % token[:-1])):
            with self.subTest(method=method, path=path):
                response, body = self.request(run, method, path, body=b"no",
                                              headers={"Content-Type": "text/plain"})
                self.assert_response(response, body, 404, body=b"Not found.\n")
        self.assertEqual(self.inbox_files(), {})
        response, body = self.request(run, "PUT", "/%s/x.txt" % token, body=b"yes")
        self.assert_response(response, body, 201, {"Location": "/%s/x.txt" % token})
        response, body = self.post_form(run, [file_part("f.txt", b"form")],
                                        headers={"Accept": "text/plain"}, path="/%s/" % token)
        self.assert_response(response, body, 200)
        self.assertEqual(self.inbox_files(), {"x.txt": b"yes", "f.txt": b"form"})
        self.assertNotIn(token, self.log_text())


class PasswordTests(UploadTestCase):

    def test_basic_passwords_none_wrong_and_right_in_any_spelling(self):
        for password in ("plain", "with:colons:in it", "p\u00e4ssw\u00f6rd \u65e5\u672c"):
            with self.subTest(password=password):
                data = os.urandom(3000)
                run = self.start(self.make_file("f.bin", data),
                                 password_digest=woof.password_digest(password))
                response, body = self.request(run)
                self.assert_response(response, body, 401, {
                    "WWW-Authenticate": 'Basic realm="woof", charset="UTF-8"'})
                self.assertNotIn(data[:100], body)
                for wrong in (password + "x", password[:-1], ""):
                    response, body = self.request(run, headers=basic_header(wrong))
                    self.assertEqual(response.status, 401)
                response, body = self.request(run, headers={"Authorization": "Basic %%%"})
                self.assertEqual(response.status, 401)
                self.assertFalse(run.done(), "a refused request never counts")
                response, body = self.request(run, headers=basic_header(password, user=""))
                self.assert_response(response, body, 200, body=data)
                run.wait()

    def test_repeated_wrong_passwords_are_slowed_down_for_that_address_only(self):
        run = self.start(self.make_file("f.txt"), password_digest=woof.password_digest("right"))
        run.server.password_guard.clock = FakeClock()  # the wait never runs out under load
        for attempt in range(woof.FREE_PASSWORD_TRIES):
            response, _ = self.request(run, headers=basic_header("wrong"))
            self.assertEqual(response.status, 401, attempt)
        response, _ = self.request(run, headers=basic_header("wrong"))
        self.assertEqual(response.status, 429)
        self.assertGreaterEqual(int(response.getheader("Retry-After")), 1)
        response, _ = self.request(run, headers=basic_header("right"))
        self.assertEqual(response.status, 429, "even the right password waits its turn")
        other = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=DEADLINE,
                                           source_address=("127.0.0.2", 0))
        self.addCleanup(other.close)
        response, body = self.request(run, headers=basic_header("right"), connection=other)
        self.assert_response(response, body, 200, body=b"hello woof\n")

    def test_the_wait_doubles_is_capped_and_few_addresses_are_remembered(self):
        guard = woof.PasswordGuard(woof.password_digest("right"))
        free = woof.FREE_PASSWORD_TRIES
        results = [guard.attempt("192.0.2.7", "wrong") for _ in range(free + 1)]
        self.assertEqual(results, [(False, 0.0)] * free + [(False, 1.0)])
        right, wait = guard.attempt("192.0.2.7", "right")
        self.assertFalse(right)
        self.assertGreater(wait, 0.5, "even the right password waits its turn")
        self.assertEqual(guard.attempt("192.0.2.8", "right"), (True, 0.0))
        now = time.monotonic()
        waits = [guard.failed("b", free, now) for _ in range(free + 40)]
        self.assertEqual(waits[free:free + 4], [1.0, 2.0, 4.0, 8.0])
        self.assertEqual(waits[-1], woof.MAX_PASSWORD_DELAY)
        for number in range(woof.MAX_TRACKED_CLIENTS + 10):
            guard.attempt("10.0.%d.%d" % divmod(number, 256), "wrong")
        self.assertEqual(len(guard.records), woof.MAX_TRACKED_CLIENTS)

    def test_an_ipv6_neighbour_cannot_lock_out_the_recipient(self):
        guard = woof.PasswordGuard(woof.password_digest("right"))
        for _ in range(woof.FREE_PASSWORD_TRIES + 3):
            guard.attempt("fd00:1:2:3::b", "wrong")
        self.assertFalse(guard.attempt("fd00:1:2:3::b", "right")[0])
        self.assertEqual(guard.attempt("fd00:1:2:3::a", "right"), (True, 0.0))
        for number in range(woof.FREE_PASSWORD_TRIES * woof.PREFIX_PASSWORD_TRIES_FACTOR):
            guard.attempt("fd00:1:2:3::%x" % (number + 0x100), "wrong")
        right, wait = guard.attempt("fd00:1:2:3::c", "right")
        self.assertEqual((right, wait > 0), (False, True),
                         "a machine rotating through its /64 is slowed down as a whole")
        self.assertEqual(guard.attempt("fd00:1:2:4::a", "right"), (True, 0.0))

    def neighbours_guessing(self, guard, clock, neighbours, hours, after_each=None):
        """Each neighbour guesses wrong as often as it is let, for hours;
        return how many wrong guesses were looked at (not refused unread).
        after_each() is called after every guess."""
        looked_at = 0
        end = clock.now + hours * 3600
        turns = [(clock.now, host) for host in neighbours]
        while True:
            when, host = heapq.heappop(turns)
            clock.now = max(clock.now, when)
            if clock.now > end:
                return looked_at
            before = guard.records.get(host, [0])[0]
            right, wait = guard.attempt(host, "guess %d" % looked_at)
            self.assertFalse(right)
            looked_at += guard.records.get(host, [0])[0] > before
            if after_each is not None:
                after_each()
            heapq.heappush(turns, (clock.now + max(wait, 0.001), host))

    def test_a_neighbours_failures_never_refuse_another_address_of_its_64(self):
        clock = FakeClock()
        guard = woof.PasswordGuard(woof.password_digest("right"), clock=clock)
        neighbours = ["fd00:1:2:3::%x" % number for number in range(0xb, 0xe)]

        def recipient_not_held_back():  # no password given: nothing is noted
            self.assertEqual(guard.attempt("fd00:1:2:3::a", None), (False, 0.0))
        self.neighbours_guessing(guard, clock, neighbours, 24, recipient_not_held_back)
        self.assertEqual(guard.attempt("fd00:1:2:3::a", "right"), (True, 0.0))

    def test_an_address_that_gave_the_password_is_not_held_back_by_its_64(self):
        clock = FakeClock()
        guard = woof.PasswordGuard(woof.password_digest("right"), clock=clock)
        self.assertEqual(guard.attempt("fd00:1:2:3::a", "right"), (True, 0.0))
        rotating = ["fd00:1:2:3::%x" % (number + 0x100) for number in range(40)]
        self.neighbours_guessing(guard, clock, rotating, hours=1)
        clock.now = guard.records["fd00:1:2:3::/64"][1] - 0.5  # while the /64 waits
        self.assertGreater(guard.wait_left("fd00:1:2:3::/64", clock.now), 0)
        self.assertEqual(guard.attempt("fd00:1:2:3::a", "right"), (True, 0.0))
        self.assertFalse(guard.attempt("fd00:1:2:3::c", "right")[0],
                         "a newcomer of the /64 waits with it: it could be the rotating machine")

    def test_guesses_from_a_machine_rotating_through_its_64_stay_few(self):
        clock = FakeClock()
        guard = woof.PasswordGuard(woof.password_digest("right"), clock=clock)
        rotating = ["fd00:1:2:3::%x" % (number + 0x100) for number in range(1000)]
        looked_at = self.neighbours_guessing(guard, clock, rotating, hours=24)
        # One address alone gets about 40 a day (5 free, then waits doubling to an hour).
        self.assertLess(looked_at, 40 * 2 * woof.PREFIX_PASSWORD_TRIES_FACTOR)

    def test_uploads_need_the_password_before_the_body_is_sent(self):
        run = self.receive(password_digest=woof.password_digest("s3cret"))
        curl = require_tool("curl")
        source = self.make_file("photo.jpg", os.urandom(200000))
        url = "http://127.0.0.1:%d/" % run.server.port
        refused = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                  "-u", "me:wrong", "-T", source, url],
                                 stdout=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(refused.stdout, b"401")
        self.assertEqual(self.inbox_files(), {})
        done = subprocess.run([curl, "-sS", "-u", "me:s3cret", "-T", source, url],
                              stdout=subprocess.PIPE, timeout=DEADLINE)
        self.assertIn(b"saved photo.jpg", done.stdout)
        with open(source, "rb") as handle:
            self.assertEqual(self.inbox_files(), {"photo.jpg": handle.read()})


class FakeClock:
    """A monotonic clock a test moves by hand: hours of password waits in no time."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class PasswordCommandLineTests(WoofTestCase):

    def test_the_printed_curl_command_saves_nothing_for_a_wrong_password(self):
        curl = require_tool("curl")
        path = self.make_file("a.txt", b"for the right person\n")
        woof_run = WoofProcess(self, ["--https", "--password", "-i", "127.0.0.1", "-p", "0",
                                      path], env=dict(os.environ, WOOF_PASSWORD="open sesame"),
                               stdin=subprocess.DEVNULL)
        woof_run.lines.get(timeout=DEADLINE)
        command = woof_run.lines.get(timeout=DEADLINE).split(": ", 1)[1]
        argv = [curl if arg == "curl" else arg for arg in shlex.split(command)]
        user = argv.index("woof")
        folder = os.path.join(self.tmp, "other side")
        os.mkdir(folder)
        for given in (None, "open sesam"):
            tried = argv[:user - 1] + argv[user + 1:] if given is None \
                else argv[:user] + ["woof:" + given] + argv[user + 1:]
            with self.subTest(password=given):
                result = subprocess.run(tried[:1] + ["-sS"] + tried[1:], cwd=folder,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        timeout=DEADLINE)
                self.assertEqual(result.returncode, 22, result.stderr)
                self.assertIn(b"401", result.stderr)
                self.assertEqual(os.listdir(folder), [])
        argv[user] = "woof:open sesame"
        subprocess.run(argv[:1] + ["-sS"] + argv[1:], cwd=folder, check=True, timeout=DEADLINE)
        self.assertEqual(os.listdir(folder), ["a.txt"])
        with open(os.path.join(folder, "a.txt"), "rb") as handle:
            self.assertEqual(handle.read(), b"for the right person\n")
        status, stderr = woof_run.finish()
        self.assertEqual(status, 0, stderr)
        self.assertRegex(stderr, r'"GET /a.txt HTTP/1.1" 401 no password given\n')
        self.assertRegex(stderr, r'"GET /a.txt HTTP/1.1" 401 wrong password\n')
        self.assertIn("download 1 of 1 complete", stderr)

    def test_the_password_comes_from_the_environment_and_a_warning_asks_for_https(self):
        path = self.make_file("f.txt", b"for the right person\n")
        woof_run = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", "--password", path],
                               env=dict(os.environ, WOOF_PASSWORD="open sesame"),
                               stdin=subprocess.DEVNULL)
        request = urllib.request.Request(woof_run.url, headers=basic_header("open sesame"))
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            self.assertEqual(response.read(), b"for the right person\n")
        status, stderr = woof_run.finish()
        self.assertEqual(status, 0, stderr)
        self.assertIn("woof: warning: --password without HTTPS", stderr)
        self.assertNotIn("open sesame", stderr)

    def test_no_terminal_and_no_environment_is_a_one_line_error(self):
        # A new session has no controlling terminal; on Windows, NUL is no
        # console, though isatty() says it is a terminal.
        environment = dict(os.environ)
        environment.pop("WOOF_PASSWORD", None)
        result = subprocess.run([sys.executable, WOOF_PATH, "-p", "0", "--password",
                                 self.make_file("f.txt")], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
                                start_new_session=os.name != "nt", timeout=DEADLINE)
        stderr = result.stderr.decode()
        self.assertEqual(result.returncode, 1, stderr)
        self.assertEqual(stderr.strip().splitlines(), [
            "woof: error: --password needs a terminal to ask for it, or the password in the "
            "WOOF_PASSWORD environment variable"])

    @unittest.skipIf(os.name == "nt", "needs a pseudo-terminal")
    def test_the_password_is_asked_on_the_terminal_without_echo(self):
        import pty
        setsid = require_tool("setsid")
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        environment = dict(os.environ)
        environment.pop("WOOF_PASSWORD", None)
        process = subprocess.Popen([setsid, "-c", sys.executable, WOOF_PATH, "-i", "127.0.0.1",
                                    "-p", "0", "--password", self.make_file("f.txt")],
                                   stdin=slave, stdout=subprocess.PIPE, stderr=slave,
                                   env=environment)
        os.close(slave)
        self.addCleanup(process.stdout.close)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        screen = b""
        for prompt, answer in ((b"Password for this woof: ", b"t\xc3\xa9l\xc3\xa9 42\n"),
                               (b"The same again: ", b"t\xc3\xa9l\xc3\xa9 42\n")):
            end = time.monotonic() + DEADLINE
            while prompt not in screen:
                self.assertLess(time.monotonic(), end, screen)
                if select.select([master], [], [], 1)[0]:
                    screen += os.read(master, 1024)
            os.write(master, answer)
            screen = screen.replace(prompt, b"", 1)
        url = process.stdout.readline().decode().split(" on ", 1)[1].strip()
        request = urllib.request.Request(url, headers=basic_header("t\u00e9l\u00e9 42"))
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            self.assertEqual(response.read(), b"hello woof\n")
        self.assertEqual(process.wait(DEADLINE), 0)
        while select.select([master], [], [], 0.5)[0]:
            try:
                screen += os.read(master, 1024)
            except OSError:
                break
        self.assertNotIn(b"t\xc3\xa9l\xc3\xa9", screen, "the password was echoed")


class HttpsTests(UploadTestCase):

    def start_tls(self, offer, **overrides):
        certificate, key = make_certificate(self, tempfile.mkdtemp(dir=self.tmp))
        run = self.start(offer, certificate=certificate, key=key, **overrides)
        context = ssl.create_default_context(cafile=certificate)
        return run, context

    def test_a_certificate_of_the_users_serves_files_folders_and_ranges(self):
        data = os.urandom(3 << 20)
        run, context = self.start_tls(self.make_file("big.bin", data), count=2)
        url = "https://127.0.0.1:%d%s" % (run.server.port, run.server.offer_path)
        self.assertEqual(run.server.url().split("://")[0], "https")
        with urllib.request.urlopen(url, timeout=DEADLINE, context=context) as response:
            self.assertEqual(response.read(), data)
        request = urllib.request.Request(url, headers={"Range": "bytes=100-"})
        with urllib.request.urlopen(request, timeout=DEADLINE, context=context) as response:
            self.assertEqual((response.status, response.read()), (206, data[100:]))
        folder = os.path.join(self.tmp, "album")
        self.make_file("a.txt", b"alpha", folder=folder)
        folder_run, folder_context = self.start_tls(woof.ArchiveOffer([folder], "gz"))
        url = "https://127.0.0.1:%d%s" % (folder_run.server.port, folder_run.server.offer_path)
        with urllib.request.urlopen(url, timeout=DEADLINE, context=folder_context) as response:
            archive = tarfile.open(fileobj=io.BytesIO(response.read()))
            self.assertEqual(archive.extractfile("album/a.txt").read(), b"alpha")
        folder_run.wait()

    def test_uploads_over_https(self):
        certificate, key = make_certificate(self, self.tmp)
        run = self.receive(certificate=certificate, key=key)
        curl = require_tool("curl")
        source = self.make_file("up.bin", os.urandom(100000))
        result = subprocess.run([curl, "-sS", "--cacert", certificate, "-T", source,
                                 "https://127.0.0.1:%d/" % run.server.port],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertIn(b"saved up.bin", result.stdout, result.stderr)
        with open(source, "rb") as handle:
            self.assertEqual(self.inbox_files(), {"up.bin": handle.read()})

    def test_plain_http_to_the_https_port_is_told_to_use_https(self):
        run, _ = self.start_tls(self.make_file("f.txt"))
        connection = self.connect(run)
        response, body = self.request(run, connection=connection)
        self.assertEqual(response.status, 400)
        self.assertIn(b"https://127.0.0.1:%d/f.txt" % run.server.port, body)
        self.assertFalse(run.done())

    def test_clients_that_stall_the_handshake_hold_up_no_one(self):
        data = os.urandom(1 << 20)
        run, context = self.start_tls(self.make_file("f.bin", data))
        stalled = []
        for opening in (b"", b"\x16", b"\x16\x03\x01\x02\x00\x01"):
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE)
                self.addCleanup(sock.close)
                sock.sendall(opening)
                stalled.append(sock)
        url = "https://127.0.0.1:%d/f.bin" % run.server.port
        with urllib.request.urlopen(url, timeout=DEADLINE, context=context) as response:
            self.assertEqual(response.read(), data)
        run.wait()

    def test_a_certificate_that_cannot_be_used_is_a_one_line_error(self):
        certificate, key = make_certificate(self, self.tmp)
        _, other_key = make_certificate(self, self.tmp, name="other")
        path = self.make_file("f.txt")
        with open(certificate) as handle:
            der = ssl.PEM_cert_to_DER_cert(handle.read())
        der_path = self.make_file("certificate.der", der)
        table = [(["--cert", certificate, "--key", other_key], "cannot use"),
                 (["--cert", os.path.join(self.tmp, "absent.pem")], "cannot use"),
                 (["--cert", path], "%s is not a PEM certificate" % path),
                 (["--cert", der_path, "--key", key], "%s is not a PEM certificate" % der_path),
                 (["--cert", certificate], "%s holds no PEM private key; give the key's "
                                           "file with --key FILE" % certificate),
                 (["--cert", certificate, "--key", path], "%s is not a PEM private key" % path)]
        for args, fragment in table:
            with self.subTest(args=args):
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    status = woof.main(["-i", "127.0.0.1", "-p", "0"] + args + [path],
                                       config_paths=())
                self.assertEqual(status, 1, stderr.getvalue())
                lines = stderr.getvalue().strip().splitlines()
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(fragment, lines[0])
                self.assertNotIn("PEM lib", lines[0])
                self.assertTrue(lines[0].startswith("woof: error: "), lines[0])

    def test_the_printed_check_command_suits_the_shells_of_the_system(self):
        tls = woof.TlsSetup(None, "sha256//" + "A" * 43 + "=", "AB")
        url = "https://192.168.1.20:8080/r%C3%A9sum%C3%A9.pdf"
        table = [(False, None, False, "curl --pinnedpubkey '%s' -k -fOJ '%s'"),
                 (False, "digest", True, "curl --pinnedpubkey '%s' -k -u woof -T FILE '%s'"),
                 (True, None, False, 'curl.exe --pinnedpubkey "%s" -k -fOJ "%s"'),
                 (True, "digest", True, 'curl.exe --pinnedpubkey "%s" -k -u woof -T FILE "%s"')]
        for windows, digest, receiving, command in table:
            with self.subTest(windows=windows, receiving=receiving):
                with mock.patch.object(woof, "WINDOWS_SHELLS", windows):
                    lines = woof.certificate_lines(tls, url, mock.Mock(password_digest=digest),
                                                   receiving)
                self.assertEqual(lines[1], "The other side can check it with: " + command
                                 % (tls.pin, url))
        self.assertEqual(woof.WINDOWS_SHELLS, os.name == "nt")

    @unittest.skipUnless(os.name == "nt", "cmd.exe is the shell of Windows")
    def test_cmd_exe_passes_the_printed_check_command_to_curl_intact(self):
        tls = woof.TlsSetup(None, "sha256//" + "A" * 43 + "=", "AB")
        url = "https://127.0.0.1:8080/r%C3%A9sum%C3%A9%202024.pdf"
        line = woof.certificate_lines(tls, url, mock.Mock(password_digest=None), False)[1]
        program, _, arguments = line.split(": ", 1)[1].partition(" ")
        self.assertEqual(program, "curl.exe")
        echo = '"%s" -c "import sys; print(sys.argv[1:])"' % sys.executable
        shell = os.path.join(os.environ.get("SystemRoot", r"C:\windows"), "system32", "cmd.exe")
        result = subprocess.run('"%s" /d /s /c "%s %s"' % (shell, echo, arguments),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(result.stdout.decode().strip(),
                         str(["--pinnedpubkey", tls.pin, "-k", "-fOJ", url]), result.stderr)

    def test_a_throwaway_certificate_is_pinned_by_the_printed_curl_command(self):
        curl = require_tool("curl")
        openssl = require_tool("openssl")
        data = os.urandom(200000)
        path = self.make_file("pinned file.bin", data)
        private_tmp = os.path.join(self.tmp, "tmp")
        os.mkdir(private_tmp)
        woof_run = WoofProcess(self, ["--https", "-i", "127.0.0.1", "-p", "0", path],
                               env=dict(os.environ, TMPDIR=private_tmp))
        self.assertTrue(woof_run.url.startswith("https://127.0.0.1:"), woof_run.url)
        fingerprint = woof_run.lines.get(timeout=DEADLINE)
        command = woof_run.lines.get(timeout=DEADLINE)
        self.assertRegex(fingerprint, r"^Certificate SHA-256 fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}$")
        self.assertEqual(os.listdir(private_tmp), [], "the throwaway key stays on disk")
        self.assertRegex(command, r"^The other side can check it with: curl --pinnedpubkey "
                                  r"'sha256//[A-Za-z0-9+/]{43}=' -k -fOJ '%s'$" % re.escape(woof_run.url))
        pin = re.search(r"'(sha256//[^']+)'", command).group(1)
        served = subprocess.run([openssl, "s_client", "-connect", "127.0.0.1:%d" % woof_run.port],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, timeout=DEADLINE).stdout
        shown = subprocess.run([openssl, "x509", "-noout", "-fingerprint", "-sha256"], input=served,
                               stdout=subprocess.PIPE, timeout=DEADLINE).stdout.decode()
        self.assertEqual(shown.strip().split("=", 1)[1], fingerprint.split(": ", 1)[1].strip())
        wrong = subprocess.run([curl, "-sS", "--pinnedpubkey", "sha256//" + "A" * 43 + "=", "-k",
                                "-o", os.path.join(self.tmp, "wrong"), woof_run.url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "wrong")))
        received = os.path.join(self.tmp, "received")
        os.mkdir(received)
        subprocess.run([curl, "-sS", "--pinnedpubkey", pin, "-k", "-OJ", woof_run.url],
                       cwd=received, check=True, timeout=DEADLINE)
        with open(os.path.join(received, "pinned file.bin"), "rb") as handle:
            self.assertEqual(handle.read(), data)
        self.assertEqual(woof_run.finish()[0], 0)


class ExpiryTests(WoofTestCase):

    def test_the_offer_expires_but_a_transfer_in_flight_finishes(self):
        data = os.urandom(32 << 20)  # more than the kernel buffers while nobody reads
        run = self.start(self.make_file("big.bin", data), expire=60.0)
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as raw:
            raw.sendall(b"GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = raw.recv(1024)
            self.assertIn(b"200 OK", first)
            # --expire runs out now, the transfer under way (a busy machine
            # could take a short expiry before the request came).
            run.server.ending.deadline = time.monotonic()
            run.server.ending.waker.wake()
            # Expired, then the listening socket closed (a moment later, by
            # the serving thread): a newcomer is refused.
            wait_until(lambda: run.server.expired and run.server.socket.fileno() == -1,
                       message="the expiry")
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", run.server.port), timeout=5).close()
            received = len(first)
            while True:
                chunk = raw.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
                if received >= len(data) + len(first.split(b"\r\n\r\n")[0]) + 4:
                    break
        run.wait()
        self.assertEqual(run.server.completed, 1)
        self.assertFalse(run.server.expired_early())

    def test_expiry_exit_statuses_tell_whether_anything_was_taken(self):
        path = self.make_file("f.txt")
        table = [(["-c", "1"], False, 3), (["-c", "0"], False, 3), (["-c", "0"], True, 0),
                 (["-c", "2"], True, 3)]
        for args, download, expected in table:
            with self.subTest(args=args, download=download):
                # Long enough for a download to come first, when there is one.
                expire = "4s" if download else "0.2s"
                woof_run = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", "--expire", expire]
                                       + args + [path])
                if download:
                    with urllib.request.urlopen(woof_run.url, timeout=DEADLINE) as response:
                        response.read()
                status, stderr = woof_run.finish()
                self.assertEqual(status, expected, stderr)
                self.assertIn("--expire is over", stderr)
                self.assertNotIn("Traceback", stderr)

    def test_count_0_serves_everyone_until_stopped(self):
        run = self.start(self.make_file("f.txt"), count=0)
        for number in range(1, 6):
            response, body = self.request(run)
            self.assert_response(response, body, 200, body=b"hello woof\n")
            wait_until(lambda: run.server.completed == number, message="the count")
        self.assertFalse(run.done())
        # The count moves before the line is logged.
        wait_until(lambda: "download 5 complete" in self.log_text(), message="the fifth log line")

    def test_durations_people_write(self):
        table = [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400),
                 ("1.5h", 5400), (" 2 H ", 7200)]
        for text, seconds in table:
            with self.subTest(text=text):
                self.assertEqual(woof.parse_duration(text), seconds)
        for text in ("", "h", "1w", "-5m", "1e3", "5 minutes"):
            with self.subTest(text=text):
                with self.assertRaises(ValueError):
                    woof.parse_duration(text)


class HostAndOriginTests(UploadTestCase):

    def test_only_this_machines_addresses_and_names_are_answered(self):
        own = socket.gethostname().lower()
        run = self.start(self.make_file("f.txt"), count=0, allowed_hosts=("files.example",))
        port = run.server.port
        table = [("127.0.0.1:%d" % port, 200), ("[::1]:%d" % port, 200), ("192.168.1.20", 200),
                 ("localhost:%d" % port, 200), ("LOCALHOST.", 200), (own, 200),
                 (own.split(".")[0] + ".local:%d" % port, 200), ("files.example", 200),
                 ("evil.example", 421), ("evil.example:%d" % port, 421),
                 ("127.0.0.1.evil.example", 421), ("localhost.evil.example", 421), ("", 421)]
        for host, status in table:
            with self.subTest(host=host):
                response, body = self.request(run, headers={"Host": host})
                self.assertEqual(response.status, status, body)
                if status == 421:
                    self.assertNotIn(b"hello woof", body)
        raw = self.raw_exchange(run, b"GET /f.txt HTTP/1.0\r\n\r\n")
        self.assertIn(b" 200 ", raw.split(b"\r\n")[0])

    def test_two_hosts_a_malformed_host_or_a_target_naming_another_get_400(self):
        run = self.start(self.make_file("f.txt"), count=0)
        port = run.server.port
        heads = [
            "GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nHost: evil.example\r\n" % port,
            "GET /f.txt HTTP/1.1\r\nHost: localhost:%d.evil.example\r\n" % port,
            "GET /f.txt HTTP/1.1\r\nHost: [::1]evil.example\r\n",
            "GET /f.txt HTTP/1.1\r\nHost: 127.0.0.1:%d/x\r\n" % port,
            "GET http://evil.example/f.txt HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port,
            "GET http://127.0.0.1:%d/f.txt HTTP/1.1\r\nHost: evil.example\r\n" % port,
            "GET http://localhost:%d/f.txt HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (port, port),
        ]
        for head in heads:
            with self.subTest(head=head):
                answer = self.raw_exchange(run, (head + "\r\n").encode("ascii"))
                self.assertEqual(answer.split(b"\r\n", 1)[0], b"HTTP/1.1 400 Bad Request")
                self.assertNotIn(b"hello woof", answer)
        for head in ("GET http://127.0.0.1:%d/f.txt HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     % (port, port), "GET /f.txt HTTP/1.1\r\nHost: [::1]:%d\r\n" % port):
            with self.subTest(head=head):
                answer = self.raw_exchange(run, (head + "Connection: close\r\n\r\n")
                                           .encode("ascii"))
                self.assertEqual(answer.split(b"\r\n", 1)[0], b"HTTP/1.1 200 OK")

    def test_the_machines_name_under_its_resolver_domains_is_its_own(self):
        text = ("# from the router\nnameserver 192.168.178.1\ndomain fritz.box\n"
                "search lan home.arpa. Fritz.Box\noptions ndots:1\nsearch\n")
        self.assertEqual(woof.resolver_domains(text), ["fritz.box", "lan", "home.arpa"])
        self.assertEqual(woof.resolver_domains("nameserver 10.0.0.1\n"), [])
        self.assertEqual(woof.own_domains(os.path.join(self.tmp, "none")), [])
        short = socket.gethostname().lower().split(".")[0]
        names = woof.local_host_names((), woof.resolver_domains(text))
        for name in ("lan", "fritz.box", "home.arpa"):
            self.assertIn("%s.%s" % (short, name), names)
        run = self.start(self.make_file("f.txt"), count=0)
        run.server.host_names = names
        for host, status in (("%s.lan" % short, 200), ("%s.fritz.box." % short.upper(), 200),
                             ("%s.home.arpa:%d" % (short, run.server.port), 200),
                             ("%s.evil.example" % short, 421), ("other.lan", 421)):
            with self.subTest(host=host):
                response, body = self.request(run, headers={"Host": host})
                self.assertEqual(response.status, status, body)

    def test_uploads_from_another_site_are_refused(self):
        run = self.receive(count=2)
        port = run.server.port
        for origin in ("http://evil.example", "null", "http://127.0.0.1:%d" % (port + 1),
                       "https://127.0.0.1:%d" % port):
            with self.subTest(origin=origin):
                response, body = self.request(run, "PUT", "/x.txt", body=b"pushed",
                                              headers={"Origin": origin})
                self.assertEqual(response.status, 403, body)
                response, body = self.post_form(run, [file_part("y.txt", b"pushed")],
                                                headers={"Origin": origin})
                self.assertEqual(response.status, 403, body)
        self.assertEqual(self.inbox_files(), {})
        response, body = self.request(run, "PUT", "/x.txt", body=b"mine",
                                      headers={"Origin": "http://127.0.0.1:%d" % port})
        self.assertEqual(response.status, 201, body)
        response, body = self.post_form(run, [file_part("y.txt", b"mine too")],
                                        headers={"Origin": "http://localhost:%d" % port,
                                                 "Host": "localhost:%d" % port})
        self.assertEqual(response.status, 200, body)
        self.assertEqual(self.inbox_files(), {"x.txt": b"mine", "y.txt": b"mine too"})


# Run by WOOF_BROWSER_PYTHON (a Python with Playwright): a page of another
# site (and one of the same site) shows woof's URL as an image and fetches
# it; then a link on it is followed, which downloads.
FOREIGN_PAGE_SCRIPT = r"""
import json, sys
from playwright.sync_api import sync_playwright
pages = sys.argv[1:3]
flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
loaded = "() => new Promise(done => { const image = document.getElementById('image');" \
         " if (image.complete) done(image.naturalWidth);" \
         " else image.onload = image.onerror = () => done(image.naturalWidth); })"
result = {"images": [], "fetched": []}
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
    try:
        page = browser.new_context(accept_downloads=True).new_page()
        for url in pages:
            page.goto(url)
            result["images"].append(page.evaluate(loaded))
            result["fetched"].append(page.evaluate("() => fetch(document.getElementById('get')"
                                                   ".href, {mode: 'no-cors'}).then(r => r.type,"
                                                   " e => String(e))"))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()  # the test has looked at woof
        with page.expect_download() as waiting:
            page.click("#get")
        with open(waiting.value.path(), "rb") as handle:
            result["download"] = handle.read().hex()
    finally:
        browser.close()
print(json.dumps(result))
"""


class ForeignPageTests(WoofTestCase):
    """Without --secret, woof's address is easy to guess: a page any person on
    the network visits must not take the download by fetching it in passing."""

    SUBRESOURCES = [("cross-site", "no-cors", "image"), ("cross-site", "no-cors", "script"),
                    ("cross-site", "no-cors", "style"), ("cross-site", "cors", "empty"),
                    ("cross-site", "navigate", "iframe"), ("cross-site", "no-cors", "video"),
                    ("same-site", "no-cors", "image"), ("same-site", "navigate", "iframe")]

    def fetch_metadata(self, site, mode, destination):
        return {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": destination}

    def test_another_sites_subresource_requests_get_403_and_never_count(self):
        data = os.urandom(5000)
        run = self.start(self.make_file("f.bin", data))
        for site, mode, destination in self.SUBRESOURCES:
            for path in (run.server.offer_path, "/"):
                with self.subTest(site=site, destination=destination, path=path):
                    response, body = self.request(run, path=path, headers=self.fetch_metadata(
                        site, mode, destination))
                    self.assertEqual(response.status, 403, body)
                    self.assertNotIn(data[:100], body)
        self.assertFalse(run.done(), "a refused request never counts")
        response, body = self.request(run, headers=self.fetch_metadata(
            "same-origin", "cors", "empty"))
        self.assert_response(response, body, 200, body=data)
        run.wait()

    def test_a_link_followed_from_another_site_downloads(self):
        data = os.urandom(5000)
        run = self.start(self.make_file("f.bin", data))
        headers = self.fetch_metadata("cross-site", "navigate", "document")
        headers["Sec-Fetch-User"] = "?1"
        response, body = self.request(run, headers=headers)
        self.assert_response(response, body, 200, body=data)
        run.wait()

    def test_curl_is_served_and_curl_claiming_to_be_an_image_is_refused(self):
        curl = require_tool("curl")
        data = os.urandom(5000)
        run = self.start(self.make_file("f.bin", data))
        refused = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                  "-H", "Sec-Fetch-Site: cross-site", "-H", "Sec-Fetch-Mode: no-cors",
                                  "-H", "Sec-Fetch-Dest: image", self.url(run)],
                                 stdout=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(refused.stdout, b"403")
        self.assertFalse(run.done())
        fetched = subprocess.run([curl, "-sS", "-f", self.url(run)], stdout=subprocess.PIPE,
                                 timeout=DEADLINE)
        self.assertEqual(fetched.returncode, 0)
        self.assertTrue(fetched.stdout == data, "the bytes differ")
        run.wait()

    def end_browser(self, browser):
        if browser.poll() is None:
            browser.kill()
        browser.wait()
        for stream in (browser.stdin, browser.stdout, browser.stderr):
            stream.close()

    def test_chromium_on_another_sites_page_leaves_the_download_to_a_followed_link(self):
        python = BrowserTest.browser_python(self)
        data = os.urandom(5000)
        run = self.start(self.make_file("f.bin", data), timeout=30.0)
        woof_url = self.url(run)
        page = ('<!DOCTYPE html><img id="image" src="%s"><a id="get" href="%s">get</a>'
                % (woof_url, woof_url)).encode("ascii")
        pages = ScriptedHttpServer(self, lambda handler: send_body(
            handler, 200, page, ("Content-Type", "text/html")))
        port = pages.httpd.server_address[1]
        browser = subprocess.Popen(
            [python, "-c", FOREIGN_PAGE_SCRIPT, "http://localhost:%d/" % port,
             "http://127.0.0.1:%d/" % port], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(self.end_browser, browser)
        first = json.loads(browser.stdout.readline() or "null")
        self.assertIsNotNone(first, browser.stderr.read()[-3000:] if browser.poll() else "")
        self.assertEqual(first["images"], [0, 0], "no image was shown")
        wait_until(lambda: self.log_text().count('" 403 ') == 4, message="4 refusals logged")
        self.assertFalse(run.done(), "a page's image or fetch took the download")
        browser.stdin.write("\n")
        browser.stdin.flush()
        result = json.loads(browser.stdout.readline())
        self.assertTrue(bytes.fromhex(result["download"]) == data, "the bytes differ")
        run.wait()
        self.assertEqual(browser.wait(DEADLINE), 0)


class ReachCommandLineTests(WoofTestCase):

    def test_qr_code_under_the_url_reads_back_as_the_url(self):
        zbarimg = require_tool("zbarimg")
        path = self.make_file("Compte rendu \u00e9t\u00e9.pdf")
        woof_run = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", "--qr", "--secret", path])
        self.assertRegex(woof_run.url, r"^http://127\.0\.0\.1:\d+/[A-Za-z0-9_-]{22}/"
                                       r"Compte%20rendu%20%C3%A9t%C3%A9\.pdf$")
        lines = []
        while True:
            line = woof_run.lines.get(timeout=DEADLINE).rstrip("\n")
            if not line.strip():
                lines.append(line)
                if len(lines) > 2 and not lines[-2].strip():
                    break
                continue
            lines.append(line)
        self.assertNotIn("\x1b", "".join(lines), "no colour codes into a pipe")
        image = os.path.join(self.tmp, "qr.png")
        write_png(image, modules_of_lines(lines))
        decoded = subprocess.run([zbarimg, "--raw", "-q", image], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=ZBARIMG_ENVIRONMENT,
                                 timeout=DEADLINE).stdout.decode().strip()
        self.assertEqual(decoded, woof_run.url)
        with urllib.request.urlopen(woof_run.url, timeout=DEADLINE) as response:
            self.assertEqual(response.read(), b"hello woof\n")
        self.assertEqual(woof_run.finish()[0], 0)

    def test_a_url_too_long_for_a_qr_code_is_a_one_line_error(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = woof.main(["-i", "127.0.0.1", "-p", "0", "--qr", "--name", "n" * 2400,
                                self.make_file("f.txt")], config_paths=())
        self.assertEqual(status, 1)
        self.assertRegex(stderr.getvalue(), r"^woof: error: the URL is too long for a QR code "
                                            r"\(\d+ bytes; at most 2331\)\n$")

    def test_secret_and_qr_from_woofrc(self):
        config = self.make_file("woofrc", b"[main]\nqr = yes\nsecret = on\n")
        parser = woof.build_parser()
        parser.set_defaults(**woof.read_config([config]))
        args = woof.parse_command_line(parser, ["f.txt"])
        self.assertEqual((args.qr, args.secret), (True, True))
        settings = woof.settings_from(args)
        self.assertRegex(settings.secret, r"^[A-Za-z0-9_-]{22}$")

    def test_every_mode_takes_the_secret(self):
        folder = os.path.join(self.tmp, "album")
        self.make_file("a.txt", b"alpha", folder=folder)
        for args, stdin in ((["-u", folder], None), (["-"], subprocess.PIPE)):
            with self.subTest(args=args):
                woof_run = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", "--secret"] + args,
                                       stdin=stdin)
                if stdin:
                    woof_run.process.stdin.write(b"piped")
                    woof_run.process.stdin.close()
                token = urllib.parse.urlsplit(woof_run.url).path.split("/")[1]
                self.assertRegex(token, r"^[A-Za-z0-9_-]{22}$")
                base = "http://127.0.0.1:%d/" % woof_run.port
                with self.assertRaises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(base, timeout=DEADLINE)
                self.assertEqual(refused.exception.code, 404)
                refused.exception.close()
                with urllib.request.urlopen(base + token + "/", timeout=DEADLINE) as response:
                    body = response.read()
                self.assertEqual(body if stdin else len(body) > 0, b"piped" if stdin else True)
                self.assertEqual(woof_run.finish()[0], 0)


# ---------------------------------------------------------------------------
# Real clients
# ---------------------------------------------------------------------------

class RealClientTests(WoofTestCase):

    NAME = "report 2024 #1 \u00e9t\u00e9.pdf"

    def client_run(self, argv, cwd):
        subprocess.run(argv, cwd=cwd, check=True, timeout=DEADLINE,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def download_with(self, tool, args, name=NAME, size=300000, **overrides):
        """Serve a file, run the client in an empty folder; return (folder, data)."""
        require_tool(tool)
        data = os.urandom(size)
        run = self.start(self.make_file(name, data), **overrides)
        folder = os.path.join(self.tmp, "client")
        os.mkdir(folder)
        self.client_run([tool] + args + [self.url(run)], folder)
        run.wait()
        return folder, data

    def assert_saved(self, folder, name, data):
        self.assertEqual(os.listdir(folder), [name])
        with open(os.path.join(folder, name), "rb") as handle:
            self.assertTrue(handle.read() == data, "the bytes differ")

    def test_curl_O_saves_a_plain_name(self):
        folder, data = self.download_with("curl", ["-sS", "-O"], name="plain-name.iso")
        self.assert_saved(folder, "plain-name.iso", data)

    def test_curl_OJ_saves_the_ascii_fallback_of_a_unicode_name(self):
        folder, data = self.download_with("curl", ["-sS", "-O", "-J"])
        self.assert_saved(folder, "report 2024 #1 ete.pdf", data)

    def test_wget_saves_the_unicode_name(self):
        folder, data = self.download_with("wget", ["-q"])
        self.assert_saved(folder, self.NAME, data)

    def test_wget_content_disposition_saves_the_unicode_name(self):
        folder, data = self.download_with("wget", ["-q", "--content-disposition"])
        self.assert_saved(folder, self.NAME, data)

    def test_aria2c_with_four_connections_counts_one_download(self):
        folder, data = self.download_with(
            "aria2c", ["-q", "-x4", "-s4", "-k1M", "--allow-overwrite=false",
                       "--auto-file-renaming=false"], size=6 << 20)
        self.assert_saved(folder, self.NAME, data)
        self.assertIn("download 1 of 1 complete", self.log_text())

    def test_curl_resumes_a_partial_download(self):
        require_tool("curl")
        data = os.urandom(200000)
        run = self.start(self.make_file("resume.bin", data))
        target = os.path.join(self.tmp, "resume.part")
        self.client_run(["curl", "-sS", "-r", "0-69999", "-o", target, self.url(run)], self.tmp)
        self.assertFalse(run.server.finished.is_set())
        self.client_run(["curl", "-sS", "-C", "-", "-o", target, self.url(run)], self.tmp)
        run.wait()
        with open(target, "rb") as handle:
            self.assertTrue(handle.read() == data, "the resumed bytes differ")

    def test_wget_continues_a_partial_download(self):
        require_tool("wget")
        data = os.urandom(200000)
        run = self.start(self.make_file("cont.bin", data))
        folder = os.path.join(self.tmp, "client")
        os.mkdir(folder)
        self.make_file("cont.bin", data[:123456], folder=folder)
        self.client_run(["wget", "-q", "-c", self.url(run)], folder)
        self.assert_saved(folder, "cont.bin", data)
        self.assertFalse(run.server.finished.is_set())


# ---------------------------------------------------------------------------
# The sender's terminal: live progress, and what woof says
# ---------------------------------------------------------------------------

ERASE_LIVE = re.compile(r"\x1b\[\d+A\r\x1b\[J")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class Terminal:
    """A pseudo-terminal, 100 columns wide, for a child's stderr; text() is all it got."""

    def __init__(self, test, columns=100):
        import fcntl
        import pty
        import termios
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.chunks = []
        self.reader = threading.Thread(target=self.read)
        self.reader.daemon = True
        test.addCleanup(self.close)

    def started(self):
        """The child has the terminal: close woof's end here and read."""
        os.close(self.slave)
        self.slave = None
        self.reader.start()

    def read(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every holder of the other end closed it
                return
            if not data:
                return
            self.chunks.append(data)

    def text(self):
        """What the terminal received, once the child has closed it."""
        self.reader.join(DEADLINE)
        return b"".join(self.chunks).decode("utf-8", "replace")

    def close(self):
        for descriptor in (self.slave, self.master):
            if descriptor is not None:
                try:
                    os.close(descriptor)
                except OSError:
                    pass
        self.slave = self.master = None


def permanent_lines(text):
    """The lines left on screen: an erase (cursor up N, erase below) takes
    back the N lines written before it, as a terminal would."""
    screen = []
    text = text.replace("\r\n", "\n")
    position = 0
    for erase in ERASE_LIVE.finditer(text):
        screen.extend(text[position:erase.start()].splitlines())
        up = int(erase.group(0)[2:].split("A")[0])
        del screen[len(screen) - up:]
        position = erase.end()
    screen.extend(text[position:].splitlines())
    return screen


class ProgressHelperTests(unittest.TestCase):

    def test_durations_read_like_a_clock(self):
        table = [(0.04, "0.0 s"), (0.42, "0.4 s"), (12.4, "12 s"), (59.4, "59 s"), (59.6, "1 min 00 s"),
                 (125, "2 min 05 s"), (3725, "1 h 02 min")]
        for seconds, text in table:
            with self.subTest(seconds=seconds):
                self.assertEqual(woof.format_elapsed(seconds), text)

    def test_long_names_are_cut_in_the_middle_to_the_columns_given(self):
        table = [("report.pdf", 30, "report.pdf"),
                 ("a" * 40 + ".pdf", 20, "aaaaaaaaa...aaaa.pdf"),
                 ("\u65e5\u672c\u8a9e" * 6 + ".txt", 16, "\u65e5\u672c\u8a9e...\u8a9e.txt"),
                 ("e\u0301t\u00e9.txt", 8, "e\u0301t\u00e9.txt"),
                 ("abcdefgh", 4, "abcd"), ("abcdefgh", 0, "")]
        for name, columns, expected in table:
            with self.subTest(name=name, columns=columns):
                self.assertEqual(woof.shortened(name, columns), expected)
                self.assertLessEqual(woof.display_width(expected), columns)

    def test_a_live_line_fits_the_terminal_and_says_how_far_and_how_fast(self):
        done = [0]
        transfer = woof.Transfer("192.168.1.7", "holiday photos " * 8 + ".zip", 200 << 20,
                                 lambda: done[0], receiving=False)
        start = transfer.started
        transfer.live_line(start + 0.5, 80)
        done[0] = 100 << 20
        line = transfer.live_line(start + 10.5, 80)
        self.assertLessEqual(woof.display_width(line), 79)
        self.assertEqual(line, "  to 192.168.1.7  hol...zip  100.0 MiB of 200.0 MiB  50%  "
                               "10.0 MiB/s  10 s left")
        for columns in (10, 30, 50):
            with self.subTest(columns=columns):
                narrow = transfer.live_line(start + 11, columns)
                self.assertLessEqual(woof.display_width(narrow), columns - 1, narrow)
                self.assertTrue(narrow.startswith("  to 192.168.1.7"[:columns - 1]))
        self.assertEqual(transfer.live_line(start + 11.5, 120),
                         "  to 192.168.1.7  holiday photos holiday p...tos holiday photos .zip"
                         "  100.0 MiB of 200.0 MiB  50%  9.1 MiB/s  11 s left")

    def test_an_upload_of_unknown_size_shows_bytes_and_speed(self):
        done = [0]
        transfer = woof.Transfer("10.0.0.2", "x.log", None, lambda: done[0], receiving=True)
        transfer.live_line(transfer.started + 1, 80)
        done[0] = 3 << 20
        self.assertEqual(transfer.live_line(transfer.started + 2, 80),
                         "  from 10.0.0.2  x.log  3.0 MiB  3.0 MiB/s")

    def test_clients_are_named_in_a_sentence(self):
        table = [(["a"], "a"), (["a", "b"], "a and b"), (["a", "b", "c"], "a, b and c"),
                 (list("abcdef"), "a, b, c, d and 2 others")]
        for hosts, text in table:
            with self.subTest(hosts=hosts):
                self.assertEqual(woof.people(hosts), text)


@unittest.skipUnless(hasattr(os, "openpty"), "needs pseudo-terminals")
class TerminalProgressTests(WoofTestCase):
    """woof run as people run it, its stderr a terminal or a pipe, against clients
    slowed down by curl --limit-rate."""

    def serve(self, args, size=32 << 20, terminal=True, env=None, receiving=False):
        """Run woof offering (or receiving) a file of `size` bytes; return (child,
        file, terminal or None)."""
        path = self.make_file("big.bin", os.urandom(size))
        if receiving:
            inbox = os.path.join(self.tmp, "inbox")
            os.mkdir(inbox)
            args = args + ["-U", inbox]
        else:
            args = args + [path]
        screen = Terminal(self) if terminal else None
        environ = dict(os.environ)
        environ.pop("NO_COLOR", None)
        environ.update(env or {})
        child = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0"] + args,
                            stderr=screen.slave if screen else subprocess.PIPE, env=environ)
        if screen:
            screen.started()
        return child, path, screen

    def curl(self, *args):
        subprocess.run([require_tool("curl"), "-sS", "--fail"] + list(args), check=True,
                       timeout=DEADLINE, stdout=subprocess.DEVNULL)

    def download(self, args, terminal=True, env=None):
        """One download at 20 MB/s, of more than the kernel's buffers hold, long
        enough for several redraws (every PROGRESS_INTERVAL); return (what woof
        wrote on stderr, seconds it ran)."""
        started = time.monotonic()
        child, _, screen = self.serve(args, terminal=terminal, env=env)
        self.curl("--limit-rate", "20M", "-o", os.devnull, child.url)
        status, stderr = child.finish()
        self.assertEqual(status, 0, stderr)
        return (screen.text() if screen else stderr), time.monotonic() - started

    def upload(self, args, terminal=True, env=None):
        """One PUT at 8 MB/s, long enough for several redraws; return what woof
        wrote on stderr."""
        child, path, screen = self.serve(args, 6 << 20, terminal, env, receiving=True)
        self.curl("--limit-rate", "8M", "-T", path, child.url + "big.bin")
        status, stderr = child.finish()
        self.assertEqual(status, 0, stderr)
        return screen.text() if screen else stderr

    def test_a_terminal_shows_a_download_live_then_a_line_that_stays(self):
        text, seconds = self.download([])
        live = re.findall(r"  to 127\.0\.0\.1  big\.bin  [0-9.]+ [KMG]?i?B of 32\.0 MiB  "
                          r"\d+%", text)
        self.assertGreater(len(live), 1, text[-2000:])
        redraws = len(ERASE_LIVE.findall(text))
        self.assertGreater(redraws, 1)
        self.assertLessEqual(redraws, seconds / woof.PROGRESS_INTERVAL + 10)
        lines = [COLOUR.sub("", line) for line in permanent_lines(text)
                 if "SHA-256 of" not in line]  # whenever computing it ended, if at all
        self.assertIn("127.0.0.1 is downloading big.bin (32.0 MiB)", lines[1])
        self.assertRegex(lines[2], r'127\.0\.0\.1 "GET /big\.bin HTTP/1\.1" 200 32\.0 MiB in '
                                   r'[0-9.]+ s \([0-9.]+ [KM]iB/s\) download 1 of 1 complete$')
        self.assertRegex(lines[3], r"done: sent big\.bin \(32\.0 MiB\) to 127\.0\.0\.1 in ")
        self.assertEqual(len(lines), 4, lines)
        self.assertIn("\x1b[32mdownload 1 of 1 complete\x1b[0m", text)

    def test_a_terminal_shows_an_upload_live_from_the_bytes_received(self):
        text = self.upload([])
        live = re.findall(r"  from 127\.0\.0\.1  big\.bin  [0-9.]+ [KMG]?i?B of 6\.0 MiB  "
                          r"\d+%  [0-9.]+ [KM]iB/s  [0-9.]+ s left", text)
        self.assertGreater(len(live), 1, text[-2000:])
        lines = [COLOUR.sub("", line) for line in permanent_lines(text)]
        self.assertIn("127.0.0.1 is sending big.bin (6.0 MiB)", lines[1])
        self.assertRegex(lines[-1], r"done: received 1 file \(6\.0 MiB\) from 127\.0\.0\.1 in ")

    def test_through_a_pipe_only_the_lines_that_stay_and_no_control_sequence(self):
        for name, run in (("download", lambda: self.download([], terminal=False)[0]),
                          ("upload", lambda: self.upload([], terminal=False))):
            with self.subTest(name):
                text = run()
                self.assertNotIn("\x1b", text)
                self.assertNotIn("\r", text)
                lines = [line for line in text.splitlines() if "SHA-256 of" not in line]
                self.assertEqual(len(lines), 5 if name == "upload" else 4, lines)
                self.assertRegex(lines[1], r"127\.0\.0\.1 is (downloading|sending) big\.bin")
                self.assertRegex(lines[-1], r"done: (sent|received) ")

    def test_no_color_keeps_the_live_lines_but_drops_colour(self):
        text = self.upload([], env={"NO_COLOR": "1"})
        self.assertIn("  from 127.0.0.1  big.bin  ", text)
        self.assertTrue(ERASE_LIVE.search(text))
        self.assertIsNone(COLOUR.search(text))
        self.assertIn("upload 1 of 1 complete", text)

    def test_quiet_leaves_the_terminal_empty(self):
        text, _ = self.download(["-q"])
        self.assertEqual(text, "")


class TransferMessageTests(WoofTestCase):

    def test_woof_says_which_transfers_still_run_once_the_count_is_reached(self):
        data = os.urandom(32 << 20)
        run = self.start(self.make_file("big.bin", data))
        slow = self.slow_client(run)
        wait_until(lambda: run.server.progress.running() == 1, message="the slow transfer")
        response, body = self.request(run)
        self.assertEqual(body, data)
        wait_until(lambda: "still running" in self.log_text(), message="the message")
        self.assertIn("1 of 1 downloads complete; 1 transfer still running; Ctrl-C stops it",
                      self.log_text())
        self.assertFalse(run.done())
        received = 0
        while True:
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
        run.wait()
        self.assertGreater(received, len(data))
        lines = self.log_text().splitlines()
        self.assertEqual(len([line for line in lines if "still running" in line]), 1, lines)
        self.assertRegex(lines[-1], r'"GET /big\.bin HTTP/1\.1" 200 32\.0 MiB in .* complete$')

    def test_the_last_line_says_what_went_to_whom(self):
        run = self.start(self.make_file("d.bin", b"twelve bytes"), count=3)
        for path in ("/elsewhere", None, None):
            response, body = self.request(run, path=path)
        wait_until(lambda: run.server.completed == 2, message="two downloads")
        self.assertRegex(run.server.summary(), r"^sent d\.bin \(12 B\) 2 times, to 127\.0\.0\.1 "
                                               r"in [0-9.]+ s$")
        status = woof.finish_status(run.server, run.server.log)
        self.assertEqual(status, 0)
        self.assertRegex(self.log_text().splitlines()[-1], r"done: sent d\.bin \(12 B\) 2 times")
        empty = self.start(self.make_file("e.bin", b""))
        self.assertEqual(empty.server.summary(), "nothing was sent")

    @unittest.skipUnless(hasattr(os, "openpty"), "needs pseudo-terminals")
    def test_a_hint_follows_when_nobody_connects(self):
        screen = Terminal(self)
        stream = open(screen.slave, "w", closefd=False)
        self.addCleanup(stream.close)
        log = woof.Log(stream=stream, environ={})
        self.assertTrue(log.live)
        server = woof.WoofServer(self.settings(), woof.FileOffer(self.make_file("f.txt")), log)
        server.progress.hint_after = 0.2
        run = ServerRun(server)
        self.addCleanup(run.stop)
        screen.reader.start()
        wait_until(lambda: b"nobody has connected" in b"".join(screen.chunks), message="the hint")
        text = b"".join(screen.chunks).decode()
        self.assertIn("must be on the same network", text)
        self.assertIn("port %d" % server.port, text)


# ---------------------------------------------------------------------------
# Checksums, end to end
# ---------------------------------------------------------------------------

class ChecksumTests(WoofTestCase):

    def checksum(self, run):
        """Compute the offer's SHA-256 as main() does; return what was printed on stdout."""
        out = io.StringIO()
        woof.checksum_in_background(run.server, run.server.log, out)
        wait_until(out.getvalue, message="the checksum line")
        return out.getvalue()

    def test_the_offered_file_gets_a_line_for_sha256sum_c_after_the_url(self):
        sha256sum = require_tool("sha256sum")
        curl = require_tool("curl")
        data = os.urandom(3 << 20)
        path = self.make_file("r\u00e9sum\u00e9 2024.pdf", data)
        child = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", path])
        line = child.lines.get(timeout=DEADLINE)
        self.assertEqual(line, "%s  r\u00e9sum\u00e9 2024.pdf\n" % hashlib.sha256(data).hexdigest())
        folder = os.path.join(self.tmp, "other side")
        os.mkdir(folder)
        subprocess.run([curl, "-sS", "-o", "r\u00e9sum\u00e9 2024.pdf", child.url], cwd=folder,
                       check=True, timeout=DEADLINE)
        check = subprocess.run([sha256sum, "-c"], cwd=folder, input=line.encode("utf-8"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertEqual(check.stdout.decode("utf-8"), "r\u00e9sum\u00e9 2024.pdf: OK\n")
        status, stderr = child.finish()
        self.assertEqual(status, 0, stderr)
        self.assertIn("SHA-256 of r\u00e9sum\u00e9 2024.pdf, for sha256sum -c", stderr)

    def test_the_line_comes_before_the_exit_when_the_download_began_at_once(self):
        sha256sum = require_tool("sha256sum")
        curl = require_tool("curl")
        name = "report 2024 #1 \u00e9t\u00e9 100%.pdf"
        saved_by_curl = "report 2024 #1 ete 100_.pdf"
        data = os.urandom(1 << 20) * 64
        path = self.make_file(name, data)
        folder = os.path.join(self.tmp, "other side")
        os.mkdir(folder)
        child = WoofProcess(self, ["-i", "127.0.0.1", "-p", "0", path])
        subprocess.run([curl, "-sS", "-fOJ", child.url], cwd=folder, check=True,
                       timeout=DEADLINE)
        status, stderr = child.finish()
        self.assertEqual(status, 0, stderr)
        self.assertEqual(os.listdir(folder), [saved_by_curl])
        lines = list(iter(lambda: child.lines.get(timeout=DEADLINE), None))
        digest = hashlib.sha256(data).hexdigest()
        self.assertEqual(lines, ["%s  %s\n" % (digest, name), "%s  %s\n" % (digest, saved_by_curl)])
        self.assertLess(stderr.index("SHA-256 of"), stderr.index("done: sent"))
        check = subprocess.run([sha256sum, "-c"], cwd=folder, input=lines[1].encode("utf-8"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertEqual(check.stdout.decode("utf-8"), saved_by_curl + ": OK\n")

    def test_a_checksum_stopped_by_the_end_is_finished_and_said(self):
        data = os.urandom(300000)
        run = self.start(self.make_file("quick.bin", data))
        response, body = self.request(run)
        self.assert_response(response, body, 200, body=data)
        run.wait()
        out = io.StringIO()
        thread = woof.checksum_in_background(run.server, run.server.log, out)
        woof.finish_checksum(run.server, thread, run.server.log, out)
        self.assertEqual(out.getvalue(), "%s  quick.bin\n" % hashlib.sha256(data).hexdigest())
        self.assertIn("SHA-256 of quick.bin, for sha256sum -c", self.log_text())

    def test_a_file_changed_after_it_was_sent_gets_no_line_at_the_end(self):
        path = self.make_file("moved.txt", b"as sent")
        run = self.start(path)
        response, body = self.request(run)
        self.assert_response(response, body, 200, body=b"as sent")
        run.wait()
        with open(path, "r+b") as handle:
            handle.write(b"CHANGED")
        os.utime(path, (1, 1))
        out = io.StringIO()
        thread = woof.checksum_in_background(run.server, run.server.log, out)
        woof.finish_checksum(run.server, thread, run.server.log, out)
        self.assertEqual(out.getvalue(), "")

    def test_the_line_above_the_checksum_names_what_checks_it_on_this_system(self):
        table = [(False, "SHA-256 of a b.pdf, for sha256sum -c on the other side:"),
                 (True, "SHA-256 of a b.pdf, for sha256sum -c on the other side, or to compare "
                        'with `certutil -hashfile "a b.pdf" SHA256`:')]
        for windows, hint in table:
            with self.subTest(windows=windows):
                with mock.patch.object(woof, "WINDOWS_SHELLS", windows):
                    self.assertEqual(woof.checksum_hint("a b.pdf"), hint)

    def test_a_name_with_a_backslash_is_escaped_as_sha256sum_reads_it(self):
        sha256sum = require_tool("sha256sum")
        name = "back\\slash.txt"
        data = b"escaped"
        if os.name == "nt":
            self.skipTest("no backslash in Windows file names")
        self.make_file(name, data)
        line = woof.checksum_line(hashlib.sha256(data).hexdigest(), name)
        self.assertTrue(line.startswith("\\"))
        check = subprocess.run([sha256sum, "-c"], cwd=self.tmp, input=line.encode() + b"\n",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_responses_carry_repr_digest_once_it_is_known(self):
        data = os.urandom(200000)
        run = self.start(self.make_file("d.bin", data), count=2)
        response, body = self.request(run, "HEAD")
        self.assert_response(response, body, 200, {"Repr-Digest": None})
        printed = self.checksum(run)
        self.assertEqual(printed, "%s  d.bin\n" % hashlib.sha256(data).hexdigest())
        field = "sha-256=:%s:" % base64.b64encode(hashlib.sha256(data).digest()).decode()
        response, body = self.request(run, "HEAD")
        self.assert_response(response, body, 200, {"Repr-Digest": field})
        response, body = self.request(run, headers={"Range": "bytes=10-19"})
        self.assert_response(response, body, 206, {"Repr-Digest": field}, data[10:20])
        response, body = self.request(run)
        self.assert_response(response, body, 200, {"Repr-Digest": field}, data)

    def test_a_file_changed_since_gets_no_digest(self):
        path = self.make_file("c.txt", b"before")
        run = self.start(path, count=2)
        self.assertTrue(self.checksum(run))
        with open(path, "r+b") as handle:
            handle.write(b"AFTER!")
        os.utime(path, (1, 1))
        response, body = self.request(run)
        self.assert_response(response, body, 200, {"Repr-Digest": None}, b"AFTER!")

    def test_computing_waits_while_a_transfer_runs(self):
        data = os.urandom(32 << 20)
        for count, printed in ((1, False), (2, True)):
            with self.subTest(count=count):
                self.log_stream = io.StringIO()
                run = self.start(self.make_file("w%d.bin" % count, data), count=count)
                slow = self.slow_client(run)
                wait_until(lambda: run.server.progress.running() == 1, message="the transfer")
                out = io.StringIO()
                thread = woof.checksum_in_background(run.server, run.server.log, out)
                while slow.recv(1 << 20):
                    pass
                thread.join(DEADLINE)
                self.assertFalse(thread.is_alive())
                self.assertEqual(run.server.offer.digest is not None, printed)
                if printed:
                    wait_until(out.getvalue, message="the checksum line")
                else:
                    run.wait()
                    self.assertEqual(out.getvalue(), "")


# ---------------------------------------------------------------------------
# Resumable uploads (draft-ietf-httpbis-resumable-upload), by hand
# ---------------------------------------------------------------------------

def read_answers(raw):
    """The interim responses and the final one a raw socket gets:
    [(status, {lower-case name: value}, body)], the final one last."""
    data, answers = b"", []
    while True:
        while b"\r\n\r\n" not in data:
            chunk = raw.recv(65536)
            if not chunk:
                raise AssertionError("the connection closed after %r" % data)
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        status = int(lines[0].split()[1])
        length = int(fields.get("content-length", "0"))
        while len(data) < length:
            data += raw.recv(65536)
        answers.append((status, fields, data[:length]))
        data = data[length:]
        if status >= 200:
            return answers


class ResumableUploadTests(UploadTestCase):
    """The server side of the draft, driven by hand."""

    def create(self, run, name="a.bin", length=None, complete="?0", body=b"", headers=None):
        values = {"Upload-Complete": complete, "Content-Length": str(len(body))}
        if length is not None:
            values["Upload-Length"] = str(length)
        values.update(headers or {})
        response, data = self.request(run, "POST", "/" + name, values, body)
        return response, data

    def append(self, run, location, offset, body, complete="?0", headers=None):
        values = {"Upload-Complete": complete, "Upload-Offset": str(offset),
                  "Content-Type": "application/partial-upload"}
        values.update(headers or {})
        return self.request(run, "PATCH", location, values, body)

    def partials(self):
        return sorted(name for name in os.listdir(self.inbox) if name.startswith(".woof-"))

    def test_creation_announces_the_resource_in_a_104_then_takes_the_first_bytes(self):
        run = self.receive()
        raw = socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE)
        self.addCleanup(raw.close)
        raw.sendall(b"POST /first.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Complete: ?0\r\n"
                    b"Upload-Draft-Interop-Version: 6\r\nUpload-Length: 10\r\n"
                    b"Content-Length: 4\r\n\r\nabcd")
        answers = read_answers(raw)
        self.assertEqual([status for status, _, _ in answers], [104, 201])
        interim, final = answers[0][1], answers[1][1]
        self.assertEqual(interim["upload-draft-interop-version"], "6")
        self.assertTrue(interim["location"].startswith("/.uploads/"))
        self.assertIn("expires=3600", interim["upload-limit"])
        self.assertEqual(final["location"], interim["location"])
        self.assertEqual((final["upload-offset"], final["upload-complete"], final["upload-length"]),
                         ("4", "?0", "10"))
        self.assertEqual(self.inbox_files().keys(), set(self.partials()))

    def test_no_104_for_a_client_that_names_no_version_woof_speaks(self):
        run = self.receive()
        for version in (None, "5", "99"):
            with self.subTest(version=version):
                raw = socket.create_connection(("127.0.0.1", run.server.port),
                                               timeout=DEADLINE)
                self.addCleanup(raw.close)
                field = b"" if version is None else b"Upload-Draft-Interop-Version: %s\r\n" % (
                    version.encode())
                raw.sendall(b"PUT /x.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Complete: ?0\r\n"
                            + field + b"Content-Length: 0\r\n\r\n")
                self.assertEqual([status for status, _, _ in read_answers(raw)], [201])

    def test_head_tells_the_offset_and_appends_complete_the_file(self):
        run = self.receive(count=1)
        data = os.urandom(300000)
        response, _ = self.create(run, length=len(data), body=data[:1000])
        location = response.getheader("Location")
        response, body = self.request(run, "HEAD", location)
        self.assert_response(response, body, 204, {
            "Upload-Offset": "1000", "Upload-Complete": "?0", "Upload-Length": "300000",
            "Cache-Control": "no-store", "Content-Length": None})
        response, body = self.append(run, location, 1000, data[1000:100000])
        self.assert_response(response, body, 204, {"Upload-Offset": "100000",
                                                   "Upload-Complete": "?0"})
        self.assertFalse(run.server.finished.is_set())
        digest = "sha-256=:%s:" % base64.b64encode(hashlib.sha256(data).digest()).decode()
        response, body = self.append(run, location, 100000, data[100000:], "?1",
                                     {"Repr-Digest": digest})
        self.assert_response(response, body, 200, {
            "Upload-Complete": "?1", "Upload-Offset": "300000", "Repr-Digest": digest})
        self.assertEqual(body.decode(), "saved a.bin (293.0 KiB, SHA-256 %s)\n"
                         % hashlib.sha256(data).hexdigest())
        self.assertEqual(self.inbox_files(), {"a.bin": data})
        run.wait()

    def test_a_lost_final_answer_can_be_asked_again_without_a_second_copy(self):
        run = self.receive(count=0)
        response, _ = self.create(run, body=b"whole", complete="?0", length=5)
        location = response.getheader("Location")
        self.append(run, location, 5, b"", "?1")
        response, body = self.request(run, "HEAD", location)
        self.assert_response(response, body, 204, {"Upload-Complete": "?1", "Upload-Offset": "5"})
        response, body = self.append(run, location, 5, b"", "?1")
        self.assert_response(response, body, 200, {"Upload-Complete": "?1"})
        self.assertIn(b"saved a.bin (5 B", body)
        self.assertEqual(self.inbox_files(), {"a.bin": b"whole"})

    def test_a_wrong_offset_gets_409_with_the_offset_woof_has(self):
        run = self.receive()
        response, _ = self.create(run, length=10, body=b"abcd")
        location = response.getheader("Location")
        response, body = self.append(run, location, 7, b"xyz")
        self.assert_response(response, body, 409, {
            "Upload-Offset": "4", "Upload-Complete": "?0",
            "Content-Type": "application/problem+json"})
        problem = json.loads(body.decode())
        self.assertEqual(problem["type"], "https://iana.org/assignments/http-problem-types"
                                          "#mismatching-upload-offset")
        self.assertEqual((problem["expected-offset"], problem["provided-offset"]), (4, 7))

    def test_delete_cancels_and_leaves_nothing(self):
        run = self.receive()
        response, _ = self.create(run, length=10, body=b"abcd")
        location = response.getheader("Location")
        response, body = self.request(run, "DELETE", location)
        self.assert_response(response, body, 204)
        self.assertEqual(self.inbox_files(), {})
        response, body = self.request(run, "HEAD", location)
        self.assertEqual(response.status, 404)
        response, body = self.append(run, location, 4, b"efgh")
        self.assertEqual(response.status, 404)

    def test_a_body_cut_off_keeps_what_arrived_for_the_resume(self):
        run = self.receive()
        response, _ = self.create(run, length=1000)
        location = response.getheader("Location")
        raw = socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE)
        raw.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Complete: ?1\r\n"
                     "Upload-Offset: 0\r\nContent-Type: application/partial-upload\r\n"
                     "Content-Length: 1000\r\n\r\n" % location).encode() + b"a" * 600)
        wait_until(lambda: run.server.uploads.find(location.rsplit("/", 1)[1]).offset == 600,
                   message="600 bytes written")
        raw.close()
        wait_until(lambda: run.server.in_flight == 0, message="the cut request to end")
        response, body = self.request(run, "HEAD", location)
        self.assert_response(response, body, 204, {"Upload-Offset": "600", "Upload-Complete": "?0"})
        self.assertEqual(len(self.partials()), 1)
        self.assertEqual(run.server.completed, 0)
        response, body = self.append(run, location, 600, b"b" * 400, "?1")
        self.assertEqual(response.status, 200)
        self.assertEqual(self.inbox_files(), {"a.bin": b"a" * 600 + b"b" * 400})

    def test_a_new_request_takes_over_from_one_the_network_left_hanging(self):
        run = self.receive()
        response, _ = self.create(run, length=1000)
        location = response.getheader("Location")
        hanging = socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE)
        self.addCleanup(hanging.close)
        hanging.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Complete: ?1\r\n"
                         "Upload-Offset: 0\r\nContent-Type: application/partial-upload\r\n"
                         "Content-Length: 1000\r\n\r\n" % location).encode() + b"a" * 300)
        partial = run.server.uploads.find(location.rsplit("/", 1)[1])
        wait_until(lambda: partial.offset == 300, message="300 bytes written")
        started = time.monotonic()
        response, body = self.request(run, "HEAD", location)
        self.assert_response(response, body, 204, {"Upload-Offset": "300"})
        self.assertLess(time.monotonic() - started, run.server.settings.timeout)
        response, body = self.append(run, location, 300, b"c" * 700, "?1")
        self.assertEqual(response.status, 200, body)
        self.assertEqual(self.inbox_files(), {"a.bin": b"a" * 300 + b"c" * 700})

    def test_lengths_that_disagree_or_pass_the_limits_are_refused(self):
        run = self.receive(max_upload=100)
        response, body = self.create(run, length=10, complete="?1", body=b"abc")
        self.assertEqual(response.status, 400, body)
        response, body = self.create(run, length=101)
        self.assertEqual(response.status, 413, body)
        response, _ = self.create(run, length=10, body=b"abcd")
        location = response.getheader("Location")
        response, body = self.append(run, location, 4, b"x" * 20)
        self.assertEqual(response.status, 400, body)
        response, _ = self.create(run, name="b.bin", body=b"abcd")
        response, body = self.append(run, response.getheader("Location"), 4, b"y" * 97)
        self.assertEqual(response.status, 413, body)
        response, body = self.request(run, "HEAD", location)
        self.assert_response(response, body, 204, {"Upload-Offset": "4"})
        self.assertEqual([name for name in self.inbox_files() if not name.startswith(".")], [])

    def test_a_digest_that_differs_publishes_nothing(self):
        run = self.receive()
        response, _ = self.create(run, length=4, body=b"abcd")
        location = response.getheader("Location")
        wrong = "sha-256=:%s:" % base64.b64encode(hashlib.sha256(b"abce").digest()).decode()
        response, body = self.append(run, location, 4, b"", "?1", {"Repr-Digest": wrong})
        self.assertEqual(response.status, 422, body)
        self.assertIn(b"arrived changed", body)
        self.assertEqual(self.inbox_files(), {})
        self.assertEqual(run.server.completed, 0)

    def test_files_of_one_send_make_one_upload_in_one_folder(self):
        run = self.receive(count=1)
        batch = {"Woof-Batch": "b" * 16, "Woof-Batch-Files": "2"}
        for index, name in enumerate(["photos/one.jpg", "photos/two.jpg"]):
            response, body = self.create(run, name=name, complete="?1" if index else "?0",
                                         body=b"%d" % index, headers=batch)
            self.assertEqual(response.status, 200 if index else 201, body)
            location = response.getheader("Location")
            if index == 0:
                self.assertFalse(run.server.finished.is_set())
                response, body = self.append(run, location, 1, b"", "?1")
                self.assertEqual(response.status, 200, body)
                self.assertFalse(run.server.finished.is_set())
        run.wait()
        self.assertEqual(self.inbox_files(), {"photos/one.jpg": b"0", "photos/two.jpg": b"1"})
        self.assertEqual(run.server.completed, 1)

    def test_many_abandoned_uploads_from_one_address_stay_bounded(self):
        run = self.receive()
        for number in range(woof.MAX_PARTIALS_PER_CLIENT + 6):
            response, body = self.create(run, name="f%d" % number, length=10, body=b"a")
            self.assertEqual(response.status, 201, body)
        self.assertEqual(len(self.partials()), woof.MAX_PARTIALS_PER_CLIENT)
        connection = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=DEADLINE,
                                                source_address=("127.0.0.2", 0))
        self.addCleanup(connection.close)
        connection.request("POST", "/other", b"b", {"Upload-Complete": "?1"})
        response = connection.getresponse()
        self.assertEqual(response.status, 200, response.read())
        self.assertIn("other", self.inbox_files())

    def test_partials_are_removed_when_woof_stops(self):
        run = self.receive()
        self.create(run, length=10, body=b"abcd")
        self.assertEqual(len(self.partials()), 1)
        run.stop()
        run.server.discard_uploads()
        self.assertEqual(self.inbox_files(), {})

    def test_the_secret_the_password_and_the_origin_guard_upload_resources(self):
        run = self.receive(secret="s3cret", password_digest=woof.password_digest("pw"))
        basic = {"Authorization": "Basic " + base64.b64encode(b"u:pw").decode()}
        response, _ = self.create(run, name="s3cret/a.bin", length=4, body=b"ab", headers=basic)
        self.assertEqual(response.status, 201)
        location = response.getheader("Location")
        self.assertTrue(location.startswith("/s3cret/.uploads/"))
        bare = location.replace("/s3cret", "", 1)
        self.assertEqual(self.request(run, "HEAD", bare, basic)[0].status, 404)
        self.assertEqual(self.request(run, "HEAD", location)[0].status, 401)
        response, body = self.append(run, location, 2, b"cd", "?1",
                                     dict(basic, Origin="http://evil.example"))
        self.assertEqual(response.status, 403, body)
        response, body = self.append(run, location, 2, b"cd", "?1", basic)
        self.assertEqual(response.status, 200, body)

    def test_woof_py_sends_a_file_resumably_and_checks_its_sha256(self):
        # In this process, so that the --platform switches reach the client
        # too: with no sendfile it hashes each piece, then sends it.
        data = os.urandom(3 << 20)
        path = self.make_file("c.bin", data)
        run = self.receive()
        parser = woof.build_parser()
        args = woof.parse_command_line(parser, ["http://127.0.0.1:%d/" % run.server.port, path])
        stdout, stderr = io.BytesIO(), io.StringIO()
        status = woof.run_client(parser, args, {"XDG_CACHE_HOME": os.path.join(self.tmp, "cache")},
                                 folder=self.tmp, stdin=io.StringIO(), stdout=stdout,
                                 stderr=stderr)
        self.assertEqual(status, 0, stderr.getvalue())
        self.assertEqual(stdout.getvalue(), sent_line("c.bin", "3.0 MiB", data))
        self.assertEqual(self.inbox_files(), {"c.bin": data})

    def test_options_tells_the_limits(self):
        run = self.receive(max_upload=1000)
        response, body = self.request(run, "OPTIONS", "/")
        self.assert_response(response, body, 204,
                             {"Upload-Limit": "max-size=1000, max-age=3600, expires=3600"})


# ---------------------------------------------------------------------------
# A real browser
# ---------------------------------------------------------------------------

# Run by WOOF_BROWSER_PYTHON (a Python with Playwright), against woof -U -c 3:
# uploads two files with the page's script, one from a page without
# JavaScript, then the last upload from the first page, which must then say
# that woof has finished; then downloads one file.
BROWSER_SCRIPT = r"""
import json, re, sys
from playwright.sync_api import sync_playwright
upload_url, download_url, first, second, third = sys.argv[1:6]
flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
result = {}
def saved_list(page):
    return page.eval_on_selector_all("#list li", "items => items.map(i => i.textContent)")
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
    try:
        page = browser.new_page()
        page.goto(upload_url)
        result["left_before"] = page.text_content("#left")
        result["hint"] = page.text_content("#hint")
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                    has_touch=True).new_page()
        phone.goto(upload_url)
        result["phone_hint"] = phone.text_content("#hint")
        result["labels"] = page.eval_on_selector_all("label", "ls => ls.map(l => l.textContent)")
        page.set_input_files("#files", [second, first])
        result["chosen"] = page.text_content("#files-chosen")
        page.click("#send")
        # A locator waits without eval(), which the page's CSP forbids.
        page.locator("#status", has_text=re.compile("^(Saved|Not saved)")).wait_for()
        result["status"] = page.text_content("#status")
        result["saved"] = saved_list(page)
        result["left_after_one"] = page.text_content("#left")
        plain = browser.new_context(java_script_enabled=False).new_page()
        plain.goto(upload_url)
        plain.set_input_files("#files", [third])
        with plain.expect_navigation():
            plain.click("#send")
        result["plain"] = plain.text_content("body")
        page.set_input_files("#files", [third])
        page.click("#send")
        page.locator("#left", has_text="finished").wait_for()
        result["status_last"] = page.text_content("#status")
        result["left_last"] = page.text_content("#left")
        result["disabled"] = [page.is_disabled(selector) for selector in ("#send", "#files", "#folder")]
        downloads = browser.new_context(accept_downloads=True).new_page()
        downloads.set_content('<a id="get" href="%s">get</a>' % download_url)
        with downloads.expect_download() as waiting:
            downloads.click("#get")
        download = waiting.value
        result["download_name"] = download.suggested_filename
        with open(download.path(), "rb") as handle:
            result["download_hex"] = handle.read().hex()
    finally:
        browser.close()
print(json.dumps(result))
"""


class BrowserTest(UploadTestCase):
    def browser_python(self):
        python = os.environ.get("WOOF_BROWSER_PYTHON")
        chromium = "/usr/bin/chromium"
        missing = None
        if not python or not os.path.exists(python):
            missing = "WOOF_BROWSER_PYTHON (a Python with playwright) is not set"
        elif not os.path.exists(chromium):
            missing = "%s is not installed" % chromium
        if missing:
            skip_or_fail(missing)
        return python

    def test_chromium_uploads_until_the_page_says_woof_has_finished_and_downloads(self):
        python = self.browser_python()
        first = self.make_file("f\u00fcrst \u65e5.txt", os.urandom(300000))
        second = self.make_file("second.bin", os.urandom(70000))
        third = self.make_file("third.txt", b"sent without javascript")
        offered = self.make_file("\u00dcn\u00efc\u00f8d\u00e9 \u65e5\u672c.txt", b"downloaded\n")
        receiver = WoofProcess(self, ["-U", self.inbox, "-c", "3", "-i", "127.0.0.1",
                                      "-p", "0"])
        sender = WoofProcess(self, ["-c", "1", "-i", "127.0.0.1", "-p", "0", offered])
        output = subprocess.run([python, "-c", BROWSER_SCRIPT, receiver.url, sender.url,
                                 first, second, third], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=120, universal_newlines=True)
        self.assertEqual(output.returncode, 0, output.stderr[-3000:])
        result = json.loads(output.stdout.strip().splitlines()[-1])
        self.assertEqual(result["labels"], ["Choose files", "Choose a folder"])
        self.assertEqual(result["hint"], "Choose files, or a folder, or drop them here.")
        self.assertEqual(result["phone_hint"], "Choose files, or a folder, to send.")
        self.assertEqual(result["left_before"], "woof takes 3 more uploads; each Send is one.")
        self.assertEqual(result["chosen"], "2 files")
        self.assertEqual(result["status"], "Saved 2 files, each verified:")
        def verified(path):
            with open(path, "rb") as handle:
                return "verified: SHA-256 %s\u2026 on both sides" % (
                    hashlib.sha256(handle.read()).hexdigest()[:16])
        self.assertEqual(result["saved"], ["f\u00fcrst \u65e5.txt (293.0 KiB) " + verified(first),
                                           "second.bin (68.4 KiB) " + verified(second)])
        self.assertEqual(result["left_after_one"], "woof takes 2 more uploads; each Send is one.")
        self.assertIn("third.txt (23 B)", result["plain"])
        self.assertIn("woof takes one more upload", result["plain"])
        self.assertEqual(result["status_last"], "Saved 1 file, each verified:")
        self.assertEqual(result["left_last"], "woof has finished receiving: nothing more can be "
                                              "sent. You can close this page.")
        self.assertEqual(result["disabled"], [True, True, True])
        self.assertEqual(receiver.wait(), 0)
        expected = {}
        for path in (first, second, third):
            with open(path, "rb") as handle:
                expected[os.path.basename(path)] = handle.read()
        expected["third (1).txt"] = expected["third.txt"]
        self.assertEqual(self.inbox_files(), expected)
        self.assertEqual(result["download_name"], os.path.basename(offered))
        self.assertEqual(bytes.fromhex(result["download_hex"]), b"downloaded\n")
        self.assertEqual(sender.wait(), 0)


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 port 0 in front of a server, which breaks
    the connection that carries the upstream byte at each cut point, as a
    dropped Wi-Fi does.  After a cut, with `block`, it refuses every new
    connection until release() (the network stays away); `upstream` counts
    the bytes sent towards the server.  At each freeze point it stops
    carrying that connection without closing it, as a network that
    vanishes does (no reset ever comes); `frozen` counts those."""

    def __init__(self, test, port, cuts=(), block=False, freezes=()):
        self.port_behind = port
        self.cuts = sorted(cuts)
        self.freezes = sorted(freezes)
        self.frozen = 0
        self.block = block
        self.blocked = threading.Event()
        self.cut_done = threading.Event()
        self.upstream = 0
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        thread = threading.Thread(target=self.accept_all)
        thread.daemon = True
        thread.start()
        test.addCleanup(self.close)

    def release(self):
        self.blocked.clear()

    def accept_all(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            # Each connection is let in or refused in a thread of its own: a
            # browser opens connections it sends nothing on for a while.
            thread = threading.Thread(target=self.admit, args=(client,))
            thread.daemon = True
            thread.start()

    def admit(self, client):
        # Refused while the network is away, unless it asks for the page, or
        # the network came back while it said nothing yet.
        if self.blocked.is_set() and not self.loads_a_page(client) and self.blocked.is_set():
            client.close()
            return
        try:
            server = socket.create_connection(("127.0.0.1", self.port_behind))
        except OSError:
            client.close()
            return
        with self.lock:
            self.sockets.extend([client, server])
        for source, target, counted in ((client, server, True), (server, client, False)):
            thread = threading.Thread(target=self.pump, args=(source, target, counted))
            thread.daemon = True
            thread.start()

    @staticmethod
    def loads_a_page(client):
        """Whether a new connection begins with a GET (the page itself, which
        a blocked network still lets through, so that it can be reloaded)."""
        client.settimeout(DEADLINE)
        try:
            return client.recv(4, socket.MSG_PEEK) == b"GET "
        except OSError:
            return False
        finally:
            client.settimeout(None)

    def pump(self, source, target, counted):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if counted:
                    data, stop = self.take(data)
                    target.sendall(data)
                    if stop == "cut":
                        self.cut(source, target)
                        return
                    if stop == "freeze":
                        return  # nothing more moves; both sockets stay open
                else:
                    target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(source, target)

    def take(self, data):
        """(the part of data before the next cut or freeze point, "cut" or
        "freeze" when that point is reached, else None)."""
        with self.lock:
            for points, stop in ((self.cuts, "cut"), (self.freezes, "freeze")):
                if points and self.upstream + len(data) >= points[0]:
                    data = data[:points.pop(0) - self.upstream]
                    self.upstream += len(data)
                    self.frozen += stop == "freeze"
                    return data, stop
            self.upstream += len(data)
            return data, None

    def cut(self, *pair):
        """The network breaks: both ends reset, and with `block` it stays away."""
        if self.block:
            self.blocked.set()
        self.drop(*pair)
        self.cut_done.set()

    @staticmethod
    def drop(*pair):
        for sock in pair:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            sock.close()

    def close(self):
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.close()
                except OSError:
                    pass


# Run by WOOF_BROWSER_PYTHON: sends the files given through a proxy that
# cuts the connection; with "reload", reloads the page once the proxy has
# cut (its marker file appears), picks the same files again and sends them;
# with "quiet", the page waits less for a request that shows no life; with
# "recalled", the page starts with what it would have kept in its storage
# before a reload (the marker file holds the Send's id and each file's
# upload); prints what the page said of each file.
BROWSER_RESUME_SCRIPT = r"""
import json, os, re, sys, time
from playwright.sync_api import sync_playwright
RECALL_SCRIPT = '''
    state => {
      const files = Array.from(document.getElementById("files").files), where = location.pathname;
      const key = f => f.name + " " + f.size + " " + f.lastModified;
      files.forEach(f => localStorage.setItem("woof " + where + " " + key(f), state.urls[f.name]));
      files.sort((a, b) => a.name.localeCompare(b.name, undefined, {numeric: true}));
      localStorage.setItem("woof send " + where + " " + files.map(key).join("/"), state.batch);
    }'''
url, mode, marker, release = sys.argv[1:5]
files = sys.argv[5:]
flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
result = {}
def wait_for_file(path):
    end = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise SystemExit("no " + path)
        time.sleep(0.02)
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
    try:
        page = browser.new_page()
        if mode == "quiet":  # a request that shows no life for 3 s is given up
            page.add_init_script("window.woofQuietSeconds = {sending: 3, answering: 6};")
        page.goto(url)
        page.set_input_files("#files", files)
        if mode == "recalled":  # what the page kept before a reload, written by the test
            with open(marker) as handle:
                page.evaluate(RECALL_SCRIPT, json.load(handle))
        page.click("#send")
        if mode == "reload":
            wait_for_file(marker)
            page.locator("#list small", has_text="connection lost").first.wait_for()
            result["lost"] = page.eval_on_selector_all("#list small", "s => s.map(x => x.textContent)")
            page.reload()
            page.set_input_files("#files", files)
            page.click("#send")
            open(release, "w").close()
        try:
            page.locator("#status", has_text=re.compile("^(Saved|[0-9]+ files? saved)")).wait_for(
                timeout=90000)
        except Exception:
            # What the page was doing when it gave up says why.
            sys.stderr.write("page: %r %r\n" % (page.text_content("#status"), page.eval_on_selector_all(
                "#list li", "s => s.map(x => [x.className, x.textContent])")))
            raise
        result["status"] = page.text_content("#status")
        result["notes"] = page.eval_on_selector_all("#list li", "s => s.map(x => [x.className, x.textContent])")
        result["left"] = page.text_content("#left")
    finally:
        browser.close()
print(json.dumps(result))
"""


class ResumingBrowserTest(UploadTestCase):
    """Chromium sends through a network that breaks; the page resumes by itself."""

    def run_page(self, url, files, mode="cuts", proxy=None):
        python = BrowserTest.browser_python(self)
        marker = os.path.join(self.tmp, "cut")
        release = os.path.join(self.tmp, "release")
        if proxy is not None:
            # The script waits on the marker; the proxy's release waits on the script.
            def watch():
                if proxy.cut_done.wait(DEADLINE * 2):
                    open(marker, "w").close()
                end = time.monotonic() + DEADLINE * 2
                while not os.path.exists(release) and time.monotonic() < end:
                    time.sleep(0.02)
                proxy.release()
            thread = threading.Thread(target=watch)
            thread.daemon = True
            thread.start()
        output = subprocess.run([python, "-c", BROWSER_RESUME_SCRIPT, url, mode, marker, release]
                                + files, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=240, universal_newlines=True)
        page = re.findall("^page: .*", output.stderr, re.M)
        self.assertEqual(output.returncode, 0, "\n".join(page) + "\n" + output.stderr[-3000:]
                         + "\nwoof's log:\n" + self.log_stream.getvalue()[-3000:])
        return json.loads(output.stdout.strip().splitlines()[-1])

    def contents(self, paths):
        found = {}
        for path in paths:
            with open(path, "rb") as handle:
                found[os.path.basename(path)] = handle.read()
        return found

    def test_the_page_resumes_after_cuts_and_every_file_arrives_verified(self):
        files = [self.make_file("one.bin", os.urandom(3 << 20)),
                 self.make_file("two.bin", os.urandom(2 << 20)),
                 self.make_file("three.txt", b"small" * 1000)]
        run = self.receive(count=1)
        proxy = CuttingProxy(self, run.server.port, cuts=[1 << 20, 3 << 20, 4 << 20])
        result = self.run_page("http://127.0.0.1:%d/" % proxy.port, files)
        self.assertEqual(result["status"], "Saved 3 files, each verified:")
        self.assertEqual([kind for kind, _ in result["notes"]], ["verified"] * 3)
        self.assertEqual(proxy.cuts, [])
        run.wait()
        self.assertEqual(self.inbox_files(), self.contents(files))
        self.assertEqual(run.server.completed, 1)
        log = self.log_stream.getvalue()
        self.assertIn("the client went away; kept for a resume", log)
        self.assertIn("resumed at", log)
        self.assertIn('"PATCH /.uploads/\u2026 HTTP/1.1" 200', log)
        self.assertNotRegex(log, "/[.]uploads/[A-Za-z0-9_-]")
        # Each file goes on from exactly where it was cut: what woof had
        # written is never asked for again.
        aborted = re.findall(r"aborted at ([0-9.]+ [KM]?i?B): the client went away", log)
        resumed = re.findall(r"resumed at ([0-9.]+ [KM]?i?B) of", log)
        self.assertTrue(aborted)
        self.assertEqual(sorted(aborted), sorted(resumed))

    def test_a_reload_and_the_same_files_picked_again_resume(self):
        big = self.make_file("big.bin", os.urandom(6 << 20))
        run = self.receive(count=1)
        proxy = CuttingProxy(self, run.server.port, cuts=[2 << 20], block=True)
        result = self.run_page("http://127.0.0.1:%d/" % proxy.port, [big], "reload", proxy)
        self.assertRegex(result["lost"][0], "^connection lost, retrying in [0-9]+ s$")
        self.assertEqual(result["status"], "Saved 1 file, each verified:")
        self.assertRegex(result["notes"][0][1], r"verified: SHA-256 [0-9a-f]{16}\u2026 on both "
                                                r"sides \(resumed at [0-9]+%\)$")
        run.wait()
        self.assertEqual(self.inbox_files(), self.contents([big]))
        self.assertIn("resumed at", self.log_stream.getvalue())

    def test_a_request_the_network_leaves_hanging_is_given_up_and_resumed(self):
        # No reset comes: only the page's own watch on the request ends it.
        big = self.make_file("big.bin", os.urandom(16 << 20))
        run = self.receive(count=1)
        proxy = CuttingProxy(self, run.server.port, freezes=[1 << 20])
        result = self.run_page("http://127.0.0.1:%d/" % proxy.port, [big], "quiet")
        self.assertEqual(result["status"], "Saved 1 file, each verified:")
        self.assertRegex(result["notes"][0][1], r"\(resumed at [0-9]+%\)$")
        self.assertEqual(proxy.frozen, 1)
        run.wait()
        self.assertEqual(self.inbox_files(), self.contents([big]))
        self.assertIn("resumed at", self.log_stream.getvalue())

    def test_files_saved_before_a_refused_one_are_kept(self):
        files = [self.make_file("a.txt", b"a" * 1000), self.make_file("b.txt", b"b" * 2000),
                 self.make_file("c.bin", os.urandom(50000))]
        run = self.receive(count=1, max_upload=10000)
        result = self.run_page("http://127.0.0.1:%d/" % run.server.port, files)
        self.assertEqual(result["status"], "2 files saved, 1 not saved:")
        notes = dict((text.split(" (")[0], (kind, text)) for kind, text in result["notes"])
        self.assertEqual(notes["c.bin"][0], "failed")
        self.assertIn("Not saved (413)", notes["c.bin"][1])
        self.assertEqual(notes["a.txt"][0], "verified")
        self.assertEqual(self.inbox_files(), {"a.txt": b"a" * 1000, "b.txt": b"b" * 2000})
        self.assertFalse(run.server.finished.is_set())


# Run by node with tus-js-client 4 (found in WOOF_TUS_DIR): uploads the file
# given to ENDPOINT in pieces, by the resumable upload draft as that client
# speaks it ("ietf-draft-05", interop version 6), resuming an upload URL
# when one is given; prints the upload URL, then DONE or FAIL.
TUS_SCRIPT = r"""
const fs = require('fs');
const tus = require(require.resolve('tus-js-client', {paths: [process.env.WOOF_TUS_DIR]}));
const [endpoint, path, resume] = process.argv.slice(2);
const upload = new tus.Upload(fs.readFileSync(path), {
  endpoint, uploadUrl: resume || null, protocol: 'ietf-draft-05', chunkSize: 1 << 20,
  retryDelays: [100, 300, 1000, 2000],
  onSuccess: () => console.log('DONE ' + upload.url),
  onError: (error) => { console.log('FAIL ' + error.message); process.exitCode = 1; },
});
upload.start();
"""


class TusClientTest(UploadTestCase):
    """tus-js-client 4, the upload library under Uppy, in its IETF draft mode."""

    def tus(self, endpoint, path, resume=""):
        node = require_tool("node")
        folder = os.environ.get("WOOF_TUS_DIR")
        if not folder or not os.path.isdir(os.path.join(folder, "node_modules", "tus-js-client")):
            skip_or_fail("WOOF_TUS_DIR (a folder where npm installed tus-js-client@4) is not set")
        script = self.make_file("upload.cjs", TUS_SCRIPT.encode())
        env = dict(os.environ, WOOF_TUS_DIR=folder)
        done = subprocess.run([node, script, endpoint, path, resume], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=DEADLINE * 2,
                              universal_newlines=True)
        return done.returncode, done.stdout.strip(), done.stderr

    def test_tus_js_client_uploads_in_pieces_and_resumes_after_cuts_by_itself(self):
        data = os.urandom((3 << 20) + 12345)
        path = self.make_file("from tus.bin", data)
        run = self.receive(count=1)
        proxy = CuttingProxy(self, run.server.port, cuts=[(1 << 20) + 5000, (2 << 20) + 777])
        status, out, err = self.tus("http://127.0.0.1:%d/from%%20tus.bin" % proxy.port, path)
        self.assertEqual(status, 0, out + err)
        self.assertTrue(out.startswith("DONE http://127.0.0.1:%d/.uploads/" % proxy.port), out)
        run.wait()
        self.assertEqual(self.inbox_files(), {"from tus.bin": data})
        self.assertEqual(proxy.cuts, [])
        self.assertIn("resumed at", self.log_stream.getvalue())

    def test_tus_js_client_resumes_an_upload_by_its_url(self):
        data = os.urandom(2 << 20)
        path = self.make_file("later.bin", data)
        run = self.receive()
        response, _ = self.request(run, "POST", "/later.bin", {
            "Upload-Complete": "?0", "Upload-Length": str(len(data))}, data[:700000])
        self.assertEqual(response.status, 201)
        location = "http://127.0.0.1:%d%s" % (run.server.port, response.getheader("Location"))
        status, out, err = self.tus("http://127.0.0.1:%d/later.bin" % run.server.port, path,
                                    location)
        self.assertEqual((status, out), (0, "DONE " + location), err)
        run.wait()
        self.assertEqual(self.inbox_files(), {"later.bin": data})
        self.assertIn("resumed at 683.6 KiB", self.log_stream.getvalue())


class ResumingClientTest(UploadTestCase):
    """woof.py URL FILE... after a receiver that hangs up: run again, it continues."""

    def send(self, url, *paths):
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(self.tmp, "cache"))
        return subprocess.run([sys.executable, WOOF_PATH, url] + list(paths),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              timeout=DEADLINE * 2, universal_newlines=True)

    def test_a_cut_send_run_again_continues_where_the_receiver_has_it(self):
        data = os.urandom(8 << 20)
        path = self.make_file("big.bin", data)
        small = self.make_file("small.txt", b"first\n")
        run = self.receive(count=1)
        proxy = CuttingProxy(self, run.server.port, cuts=[3 << 20])
        url = "http://127.0.0.1:%d/" % proxy.port
        first = self.send(url, small, path)
        self.assertEqual(first.returncode, 1, first.stderr)
        self.assertIn("run the same command again to continue", first.stderr)
        self.assertNotIn("Traceback", first.stderr)
        self.assertFalse(run.server.finished.is_set())
        wait_until(lambda: run.server.in_flight == 0, message="the cut request to end")
        # What woof kept of big.bin (a reset may cost what it had not yet read).
        kept = [len(data) for name, data in self.inbox_files().items() if name.endswith(".part")]
        self.assertEqual(len(kept), 1)
        self.assertGreater(kept[0], 0)
        before = proxy.upstream
        second = self.send(url, small, path)
        self.assertEqual(second.returncode, 0, second.stderr)
        sha = hashlib.sha256(data).hexdigest()
        self.assertIn("big.bin (8.0 MiB, SHA-256 %s) verified" % sha, second.stdout)
        self.assertIn("small.txt had arrived before", second.stdout)
        self.assertIn("Resuming big.bin at %s of 8.0 MiB" % woof.format_size(kept[0]),
                      second.stderr)
        run.wait()
        self.assertEqual(self.inbox_files(), {"big.bin": data, "small.txt": b"first\n"})
        # Only what had not reached woof went again (plus the requests' heads).
        self.assertLess(proxy.upstream - before, len(data) - kept[0] + (64 << 10))


class ReviewFindingsTests(UploadTestCase):
    """Hostile review of the resumable uploads (#15): each test shows a defect."""

    def request_from(self, run, source, method, path, headers, body=b""):
        """One request from another loopback address (a second machine)."""
        connection = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=DEADLINE,
                                                source_address=(source, 0))
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def create(self, run, name, length, batch=None, files=None, source="127.0.0.1"):
        headers = {"Upload-Complete": "?0", "Upload-Length": str(length), "Content-Length": "0"}
        if batch is not None:
            headers.update({"Woof-Batch": batch, "Woof-Batch-Files": str(files)})
        response, body = self.request_from(run, source, "POST", "/" + name, headers)
        self.assertEqual(response.status, 201, body)
        return response.getheader("Location")

    def finish(self, run, location, data, source="127.0.0.1"):
        return self.request_from(run, source, "PATCH", location, {
            "Upload-Complete": "?1", "Upload-Offset": "0",
            "Content-Type": "application/partial-upload", "Content-Length": str(len(data))}, data)

    def test_a_reload_mid_send_sends_no_saved_file_again_and_the_send_counts(self):
        # After a reload, the same files picked again are the same Send: the
        # files saved before are not sent again ("a (1).txt"), and the Send
        # is not split over two batches.
        files = [self.make_file("a.txt", b"small a"),
                 self.make_file("b.bin", os.urandom(3 << 20)),
                 self.make_file("c.bin", os.urandom(3 << 20)),
                 self.make_file("d.txt", b"small d")]
        run = self.receive(count=1)
        proxy = CuttingProxy(self, run.server.port, cuts=[2 << 20], block=True)
        result = ResumingBrowserTest.run_page(self, "http://127.0.0.1:%d/" % proxy.port, files,
                                              "reload", proxy)
        run.wait()  # the Send was the one upload asked for
        # A creation whose answer the reload cut off leaves a partial the page
        # never learnt of: it goes when woof ends, as main() has it.
        run.server.discard_uploads()
        self.assertEqual(sorted(self.inbox_files()), ["a.txt", "b.bin", "c.bin", "d.txt"])
        self.assertEqual(run.server.completed, 1)
        # Seen as well: a file saved before the reload shown "Not saved (503): woof has finished".
        self.assertEqual(result["status"], "Saved 4 files, each verified:")

    def test_files_saved_before_a_reload_are_confirmed_before_the_last_one_ends_woof(self):
        # After a reload, the page asks woof where each file it had sent
        # stands before it sends any on: the last file saved ends woof, which
        # then answers nobody, and a file saved before the reload that was
        # asked about only then was left "connection lost, retrying" for ever.
        files = [self.make_file("a.bin", os.urandom(1 << 20))]
        files += [self.make_file("b%02d.txt" % number, b"small %d" % number)
                  for number in range(1, 31)]
        sent = ResumingBrowserTest.contents(self, files)
        run = self.receive(count=1)
        state = {"batch": "reloadedsend01", "urls": {}}
        for name, data in sorted(sent.items()):
            location = self.create(run, name, len(data), state["batch"], len(files))
            state["urls"][name] = "http://127.0.0.1:%d%s" % (run.server.port, location)
            if name == "a.bin":  # all but its last KiB had arrived
                response, body = self.request_from(run, "127.0.0.1", "PATCH", location, {
                    "Upload-Complete": "?0", "Upload-Offset": "0",
                    "Content-Type": "application/partial-upload",
                    "Content-Length": str(len(data) - 1024)}, data[:-1024])
                self.assertEqual(response.status, 204, body)
            else:
                self.assertEqual(self.finish(run, location, data)[0].status, 200)
        with open(os.path.join(self.tmp, "cut"), "w") as handle:
            json.dump(state, handle)
        result = ResumingBrowserTest.run_page(self, "http://127.0.0.1:%d/" % run.server.port,
                                              files, "recalled")
        self.assertEqual(result["status"], "Saved 31 files, each verified:")
        self.assertRegex(result["notes"][0][1], r"^a[.]bin .* verified: .*[(]resumed at 99%[)]$")
        run.wait()
        self.assertEqual(self.inbox_files(), sent)
        self.assertEqual(run.server.completed, 1)

    def test_one_address_evicting_open_sends_keeps_a_send_from_counting(self):
        run = self.receive(count=1)
        first = self.create(run, "a.txt", 1, "victimsend01", 2)
        self.assertEqual(self.finish(run, first, b"a")[0].status, 200)
        for number in range(woof.MAX_OPEN_BATCHES):
            self.create(run, "x", 1, "other%07d" % number, 2, source="127.0.0.3")
        second = self.create(run, "b.txt", 1, "victimsend01", 2)
        self.assertEqual(self.finish(run, second, b"b")[0].status, 200)
        self.assertEqual(run.server.completed, 1)

    def test_another_address_cannot_join_a_send_by_its_batch_id(self):
        run = self.receive(count=1)
        first = self.create(run, "photos/a.txt", 1, "victimsend01", 2)
        self.create(run, "photos/b.txt", 1, "victimsend01", 2)
        self.finish(run, first, b"a")
        connection = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=DEADLINE,
                                                source_address=("127.0.0.2", 0))
        self.addCleanup(connection.close)
        connection.request("POST", "/photos/evil.txt", b"", {
            "Upload-Complete": "?0", "Upload-Length": "4", "Woof-Batch": "victimsend01",
            "Woof-Batch-Files": "2"})
        response = connection.getresponse()
        self.assert_response(response, response.read(), 400)
        self.assertNotIn("photos/evil.txt", self.inbox_files())
        self.assertFalse(run.server.finished.is_set())

    def test_one_creation_promising_all_free_space_refuses_nobody_else(self):
        run = self.receive()
        free = shutil.disk_usage(self.inbox).free
        self.create(run, "hog.bin", free - (1 << 20), source="127.0.0.4")
        response, body = self.request(run, "POST", "/mine.txt", {
            "Upload-Complete": "?0", "Upload-Length": str(2 << 20), "Content-Length": "0"})
        self.assertEqual(response.status, 201, body)

    def test_four_addresses_abandoning_creations_do_not_lock_the_recipient_out(self):
        run = self.receive()
        for host in range(woof.MAX_PARTIALS // woof.MAX_PARTIALS_PER_CLIENT):
            for _ in range(woof.MAX_PARTIALS_PER_CLIENT):
                self.create(run, "x", 1, source="127.0.0.%d" % (10 + host))
        response, body = self.request(run, "POST", "/mine.txt", {
            "Upload-Complete": "?0", "Upload-Length": "5", "Content-Length": "0"})
        self.assertEqual(response.status, 201, body)

    def test_no_104_to_an_http_1_0_client(self):
        # RFC 9110, 15.2: a server must not send a 1xx answer to an HTTP/1.0 client.
        run = self.receive()
        answer = self.raw_exchange(run, b"PUT /x.bin HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                                        b"Upload-Complete: ?1\r\nUpload-Draft-Interop-Version: 8"
                                        b"\r\nContent-Length: 3\r\n\r\nabc")
        self.assertTrue(answer.startswith(b"HTTP/1.1 201 "), answer[:120])

    def test_a_damaged_upload_state_file_gives_no_traceback(self):
        path = self.make_file("f.txt", b"hello\n")
        run = self.receive(count=0)
        cache = os.path.join(self.tmp, "cache")
        for damage in ('{"k": {"files": {}, "batch": "abcdefgh", "time": null}}', "[" * 100000):
            with self.subTest(damage=damage[:20]):
                self.make_file("uploads.json", damage.encode(), os.path.join(cache, "woof"))
                env = dict(os.environ, XDG_CACHE_HOME=cache)
                done = subprocess.run([sys.executable, WOOF_PATH, self.url(run, "/"), path],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                      timeout=DEADLINE * 2, universal_newlines=True)
                self.assertNotIn("Traceback", done.stderr)
                self.assertEqual(done.returncode, 0, done.stderr[-500:])


# ---------------------------------------------------------------------------
# Client mode: woof.py URL fetches, woof.py URL FILE... sends
# ---------------------------------------------------------------------------

class ScriptedHttpServer:
    """A small HTTP/1.1 server in a thread whose answers a test scripts:
    answer(handler) writes each response; `requests` keeps (method, path,
    headers, body) of every request."""

    def __init__(self, test, answer):
        outer = self
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except OSError:
                    self.close_connection = True  # the client went away; nothing to tell

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, self.headers, body))
                answer(self)

            do_HEAD = do_PUT = do_POST = do_GET

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))
        self.thread.daemon = True
        self.thread.start()
        test.addCleanup(self.stop)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.httpd.server_address[1], path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def send_body(handler, status, data, *headers):
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


class ResourceServer(ScriptedHttpServer):
    """Serves `data` at every path: a strong ETag, and Range with If-Range
    when ranges=True (RFC 7233).  Its first `cuts` GETs hang up after
    cut_after body bytes, as a server whose connection drops."""

    def __init__(self, test, data, ranges=True, cut_after=None, cuts=1, etag='"v1"',
                 last_modified=True, disposition=None):
        self.data = data
        self.ranges = ranges
        self.cut_after = cut_after
        self.cuts = cuts
        self.etag = etag
        self.last_modified = last_modified
        self.disposition = disposition
        super().__init__(test, self.answer)

    def answer(self, handler):
        data, start, status = self.data, 0, 200
        headers = [("Content-Type", "application/octet-stream")]
        if self.etag:
            headers.append(("ETag", self.etag))
        if self.last_modified:
            headers.append(("Last-Modified", LAST_MODIFIED))
        if self.disposition:
            headers.append(("Content-Disposition", self.disposition))
        asked = handler.headers.get("Range")
        if_range = handler.headers.get("If-Range")
        if self.ranges:
            headers.append(("Accept-Ranges", "bytes"))
            if asked and (if_range is None or if_range in (self.etag, LAST_MODIFIED)):
                start, status = int(asked.split("=")[1].rstrip("-")), 206
                headers.append(("Content-Range", "bytes %d-%d/%d"
                                % (start, len(data) - 1, len(data))))
        body = data[start:]
        if self.cuts and self.cut_after is not None and handler.command == "GET":
            self.cuts -= 1
            handler.send_response(status)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body[:self.cut_after])
            handler.wfile.flush()
            handler.close_connection = True
            return
        send_body(handler, status, body, *headers)


class HttpServerProcess:
    """`python -m http.server` serving a folder on 127.0.0.1, any free port."""

    def __init__(self, test, folder):
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            universal_newlines=True)
        test.addCleanup(self.close)
        line = self.process.stdout.readline()
        match = re.search(r"port (\d+)", line)
        if not match:
            raise AssertionError("http.server printed %r" % line)
        self.port = int(match.group(1))

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()


class RecordingTlsServer:
    """Accepts one TLS connection and keeps every byte the client sends after
    the handshake, until it closes."""

    def __init__(self, test, certificate_path, key_path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate_path, key_path)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(DEADLINE)
        self.port = self.listener.getsockname()[1]
        self.received = None
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()
        test.addCleanup(self.listener.close)

    def serve(self):
        connection, _ = self.listener.accept()
        connection.settimeout(DEADLINE)
        received = b""
        try:
            with self.context.wrap_socket(connection, server_side=True) as secure:
                while True:
                    chunk = secure.recv(4096)
                    if not chunk:
                        break
                    received += chunk
        except OSError:
            pass  # the client closed without a TLS close_notify
        self.received = received


def make_tar(path, members, compression=""):
    """A tar of (TarInfo, data or None) pairs, as hostile as the test wants."""
    with tarfile.open(path, "w" + (":" + compression if compression else ""),
                      format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def tar_info(name, kind=tarfile.REGTYPE, target="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.mode = mode
    info.mtime = 1700000000
    return info


class ClientTestCase(UploadTestCase):
    """Runs the client in-process against servers started in the test; it
    saves into self.dest, never the current folder."""

    def setUp(self):
        super().setUp()
        self.dest = os.path.join(self.tmp, "dest")
        os.mkdir(self.dest)

    def client(self, *argv, environ=None, folder=None, stdin=None):
        """run_client as main() calls it; return (status, stdout bytes, stderr text)."""
        stdout, stderr = io.BytesIO(), io.StringIO()
        parser = woof.build_parser()
        try:
            args = woof.parse_command_line(parser, list(argv))
            self.assertTrue(woof.is_client_call(args))
            with contextlib.redirect_stderr(stderr):
                environ = dict({"XDG_CACHE_HOME": os.path.join(self.tmp, "cache")},
                               **(environ or {}))
                status = woof.run_client(parser, args, environ, folder=folder or self.dest,
                                         stdin=stdin or io.StringIO(), stdout=stdout,
                                         stderr=stderr)
        except SystemExit as exit_request:
            status = exit_request.code
        return status, stdout.getvalue(), stderr.getvalue()

    def client_process(self, args, cwd=None, env=None, stdin=subprocess.DEVNULL, prefix=None):
        """woof.py run as users run it; return the CompletedProcess (bytes)."""
        argv = [sys.executable] + (prefix or [WOOF_PATH]) + list(args)
        return subprocess.run(argv, cwd=cwd or self.dest, env=env, stdin=stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)

    def assert_error_is_only_line(self, status, stderr, *fragments):
        """The client returned 1 and stderr is one line, "woof: error: ...",
        holding each fragment."""
        self.assertEqual(status, 1, stderr)
        lines = stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, stderr)
        self.assertTrue(lines[0].startswith("woof: error: "), stderr)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])

    def visible_files(self, folder=None):
        return {name: data for name, data in tree_of(folder or self.dest).items()
                if not name.split("/")[-1].startswith(".")}

    def hidden_files(self, folder=None):
        return {name: data for name, data in tree_of(folder or self.dest).items()
                if name.split("/")[-1].startswith(".")}


class ClientNameTests(unittest.TestCase):

    def test_names_come_from_content_disposition_then_the_url_then_a_fallback(self):
        table = [
            ("attachment; filename=\"a.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
             "http://h/x", "r\u00e9sum\u00e9.pdf"),
            ('attachment; filename="plain.txt"', "http://h/other.bin", "plain.txt"),
            ("attachment; filename=\"caf\u00c3\u00a9.txt\"", "http://h/", "caf\u00e9.txt"),
            ('attachment; filename="../../etc/passwd"', "http://h/", "passwd"),
            ('attachment; filename="C:\\\\Windows\\\\evil.exe"', "http://h/", "evil.exe"),
            ('attachment; filename=".bashrc"', "http://h/", "_.bashrc"),
            ('attachment; filename="a\u202egpj.exe"'.encode().decode("latin-1"), "http://h/",
             "a_gpj.exe"),
            ('attachment; filename=".."', "http://h/f%C3%BCr.txt", "f\u00fcr.txt"),
            (None, "http://h/dir/r%C3%A9sum%C3%A9%20%231.txt?x=1", "r\u00e9sum\u00e9 #1.txt"),
            (None, "http://h/a%2Fb%2F..%2Fc.txt", "c.txt"),
            (None, "http://h/", "download"),
            (None, "http://h/%00%01", "__"),
            ("inline", "http://h/", "download"),
        ]
        for disposition, url, expected in table:
            with self.subTest(disposition=disposition, url=url):
                self.assertEqual(woof.fetched_name(disposition, url), expected)

    def test_member_paths_are_made_relative_or_refused(self):
        table = [("a/b.txt", "a/b.txt"), ("./a//b/./c", "a/b/c"), ("/etc/passwd", "etc/passwd"),
                 ("a/../b", "b"), ("./", None), ("dir/", "dir")]
        for name, expected in table:
            with self.subTest(name=name):
                self.assertEqual(woof.member_path(name), expected)
        for name in ("..", "../x", "a/../../x", "/../x"):
            with self.subTest(name=name):
                with self.assertRaisesRegex(woof.WoofError, "leads outside"):
                    woof.member_path(name)

    def test_pins_must_be_sha256_digests(self):
        good = "sha256//" + base64.b64encode(b"k" * 32).decode()
        self.assertEqual(woof.checked_pins(good), [good])
        self.assertEqual(woof.checked_pins(good + ";" + good), [good, good])
        for bad in ("sha1//" + good[8:], "sha256//" + base64.b64encode(b"k" * 31).decode(),
                    "sha256//not base64!", "", good + ";"):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    woof.checked_pins(bad)

    def test_urls_become_request_targets(self):
        table = [("http://127.0.0.1:8080/a%20b?x=1#f", ("http", "127.0.0.1", 8080, "/a%20b?x=1")),
                 ("HTTPS://[::1]/", ("https", "::1", 443, "/")),
                 ("http://host", ("http", "host", 80, "/")),
                 ("http://h/\u00e9t\u00e9 1", ("http", "h", 80, "/%C3%A9t%C3%A9%201"))]
        for url, expected in table:
            with self.subTest(url=url):
                self.assertEqual(tuple(woof.parse_url(url)), expected)
        for url in ("ftp://h/", "http://", "http://h:99999/"):
            with self.subTest(url=url):
                with self.assertRaises(woof.WoofError):
                    woof.parse_url(url)


class ClientFetchTests(ClientTestCase):

    def test_a_download_from_woof_keeps_its_unicode_name_and_exact_bytes(self):
        data = os.urandom(300000)
        run = self.start(self.make_file("rapport \u00e9t\u00e9 #2.pdf", data))
        status, stdout, stderr = self.client(self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"rapport \u00e9t\u00e9 #2.pdf": data})
        self.assertEqual(stdout, b"")
        self.assertRegex(stderr, r'^Saved "rapport \u00e9t\u00e9 #2\.pdf" \(293\.0 KiB in ')
        run.wait()  # the download counted: woof exits by itself

    def test_the_secret_link_is_just_part_of_the_url(self):
        run = self.start(self.make_file("s.txt", b"secret data"), secret="T0k3n")
        status, _, stderr = self.client("http://127.0.0.1:%d/T0k3n/" % run.server.port)
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"s.txt": b"secret data"})

    def test_an_existing_file_is_never_replaced(self):
        self.make_file("a.txt", b"mine", folder=self.dest)
        self.make_file("a (1).txt", b"mine too", folder=self.dest)
        run = self.start(self.make_file("a.txt", b"theirs"))
        status, _, stderr = self.client(self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"a.txt": b"mine", "a (1).txt": b"mine too",
                                              "a (2).txt": b"theirs"})
        self.assertIn('Saved "a (2).txt"', stderr)

    def test_o_saves_exactly_there_and_replaces_only_with_force(self):
        run = self.start(self.make_file("f.bin", b"new bytes"), count=0)
        status, _, stderr = self.client("-o", "sub/out.bin", self.url(run))
        self.assert_error_is_only_line(status, stderr, "there is no folder")
        os.mkdir(os.path.join(self.dest, "sub"))
        status, _, stderr = self.client("-o", "sub/out.bin", self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"sub": None, "sub/out.bin": b"new bytes"})
        old = self.make_file("kept.bin", b"old", folder=self.dest)
        status, _, stderr = self.client("-o", "kept.bin", self.url(run))
        self.assert_error_is_only_line(status, stderr, "kept.bin exists; add --force")
        self.assertEqual(tree_of(self.dest)["kept.bin"], b"old")
        status, _, stderr = self.client("-o", old, "--force", self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"sub": None, "sub/out.bin": b"new bytes",
                                              "kept.bin": b"new bytes"})
        status, _, stderr = self.client("-o", "sub", self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest)["sub/f.bin"], b"new bytes")

    def test_o_dash_writes_to_standard_output(self):
        data = os.urandom(200000)
        run = self.start(self.make_file("f.bin", data), count=0)
        status, stdout, stderr = self.client("-o", "-", "-q", self.url(run))
        self.assertEqual((status, stdout, stderr), (0, data, ""))
        result = self.client_process(["-o", "-", self.url(run)])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, data)
        self.assertEqual(tree_of(self.dest), {})

    def test_python_http_server_files_keep_their_names(self):
        served = os.path.join(self.tmp, "served")
        data = os.urandom(100000)
        self.make_file("\u00e9t\u00e9 #1.txt", data, folder=served)
        server = HttpServerProcess(self, served)
        status, _, stderr = self.client(server.url("/%C3%A9t%C3%A9%20%231.txt"))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"\u00e9t\u00e9 #1.txt": data})
        status, _, stderr = self.client(server.url("/missing.txt"))
        self.assert_error_is_only_line(status, stderr, "404 Not Found")
        self.assertEqual(tree_of(self.dest), {"\u00e9t\u00e9 #1.txt": data})

    def test_a_broken_download_resumes_with_range_and_if_range(self):
        data = os.urandom(500000)
        server = ResourceServer(self, data, cut_after=120000,
                                disposition="attachment; filename=\"r.bin\"")
        status, _, stderr = self.client(server.url("/r"))
        self.assert_error_is_only_line(status, stderr, "broke off after 117.2 KiB of 488.3 KiB",
                                   "run the same command again to continue")
        hidden = self.hidden_files()
        self.assertEqual(self.visible_files(), {})
        parts = [data_ for name, data_ in hidden.items() if name.endswith(".part")]
        self.assertEqual(parts, [data[:120000]])
        status, _, stderr = self.client(server.url("/r"))
        self.assertEqual(status, 0, stderr)
        self.assertIn("resumed at 117.2 KiB", stderr)
        self.assertEqual(tree_of(self.dest), {"r.bin": data})
        headers = server.requests[-1][2]
        self.assertEqual((headers["Range"], headers["If-Range"]), ("bytes=120000-", '"v1"'))

    def test_woof_itself_resumes_and_counts_one_download(self):
        data = os.urandom(400000)
        run = self.start(self.make_file("w.bin", data))
        partial = woof.PartialDownload(self.dest, self.url(run))
        with open(partial.path, "wb") as handle:
            handle.write(data[:150000])
        response, _ = self.request(run, "HEAD")
        with open(partial.state_path, "w") as handle:
            json.dump({"validator": response.getheader("ETag"), "total": len(data)}, handle)
        # The first 150000 bytes reached this client before (an earlier GET).
        self.request(run, "GET", headers={"Range": "bytes=0-149999"})
        status, _, stderr = self.client(self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"w.bin": data})
        run.wait()
        self.assertIn("206", self.log_text())

    def test_the_date_validates_when_there_is_no_etag(self):
        data = os.urandom(300000)
        server = ResourceServer(self, data, cut_after=1000, etag=None)
        self.assertEqual(self.client(server.url("/d.bin"))[0], 1)
        status, _, stderr = self.client(server.url("/d.bin"))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(server.requests[-1][2]["If-Range"], LAST_MODIFIED)
        self.assertIn("resumed at", stderr)
        self.assertEqual(tree_of(self.dest), {"d.bin": data})

    def test_a_server_without_range_support_starts_over_cleanly(self):
        data = os.urandom(300000)
        server = ResourceServer(self, data, ranges=False, cut_after=100000)
        status, _, stderr = self.client(server.url("/n.bin"))
        self.assert_error_is_only_line(status, stderr, "cannot resume",
                                   "running the same command again starts over")
        self.assertEqual(self.visible_files(), {})
        status, _, stderr = self.client(server.url("/n.bin"))
        self.assertEqual(status, 0, stderr)
        self.assertNotIn("resumed", stderr)
        self.assertEqual(tree_of(self.dest), {"n.bin": data})

    def test_a_server_without_validators_leaves_no_partial_file(self):
        server = ResourceServer(self, os.urandom(300000), cut_after=5000, etag=None,
                                last_modified=False)
        status, _, stderr = self.client(server.url("/v.bin"))
        self.assert_error_is_only_line(status, stderr, "starts over")
        self.assertEqual(tree_of(self.dest), {})
        status, _, stderr = self.client(server.url("/v.bin"))
        self.assertEqual(status, 0, stderr)
        self.assertNotIn("Range", server.requests[-1][2])
        self.assertEqual(tree_of(self.dest), {"v.bin": server.data})

    def test_a_file_changed_on_the_server_starts_over(self):
        old, new = os.urandom(300000), os.urandom(250000)
        server = ResourceServer(self, old, cut_after=100000)
        self.assertEqual(self.client(server.url("/c.bin"))[0], 1)
        server.data, server.etag = new, '"v2"'
        status, _, stderr = self.client(server.url("/c.bin"))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(server.requests[-1][2]["If-Range"], '"v1"')
        self.assertEqual(tree_of(self.dest), {"c.bin": new})

    def test_a_redirect_is_followed_and_names_the_file(self):
        data = b"moved here\n"

        def answer(handler):
            if handler.path == "/old":
                send_body(handler, 302, b"", ("Location", "/new/%C3%A9.txt"))
            else:
                send_body(handler, 200, data)
        server = ScriptedHttpServer(self, answer)
        status, _, stderr = self.client(server.url("/old"))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"\u00e9.txt": data})

    @unittest.skipUnless(hasattr(os, "fork"), "resource limits are POSIX")
    def test_a_full_disk_is_one_line_and_keeps_the_partial_file_for_later(self):
        server = ResourceServer(self, os.urandom(2 << 20))
        limit = ("import resource, runpy, sys; "
                 "resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000)); "
                 "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
        result = self.client_process([WOOF_PATH, server.url("/big.bin")], prefix=["-c", limit])
        stderr = result.stderr.decode()
        self.assert_error_is_only_line(result.returncode, stderr, "the disk is full after",
                                   "free some space, then run the same command again")
        self.assertEqual(self.visible_files(), {})
        status, _, stderr = self.client(server.url("/big.bin"))
        self.assertEqual(status, 0, stderr)
        self.assertIn("resumed at", stderr)
        self.assertEqual(tree_of(self.dest), {"big.bin": server.data})

    def test_errors_are_one_line_and_leave_no_file(self):
        protected = self.start(self.make_file("p.txt"), count=0,
                               password_digest=woof.password_digest("right"))
        gone_path = self.make_file("gone.txt")
        gone = self.start(gone_path, count=0)
        os.replace(self.make_file("new.txt", b"another file"), gone_path)
        finished = self.start(self.make_file("once.txt"))
        with socket.socket() as closed:  # (after the servers: none of them can take its port)
            closed.bind(("127.0.0.1", 0))
            closed_port = closed.getsockname()[1]
        self.assertEqual(self.client("-o", "-", self.url(finished))[0], 0)
        finished.wait()
        table = [
            (["http://127.0.0.1:%d/" % closed_port], {}, "nothing listens there"),
            ([self.url(protected)], {}, "asks for a password: add --password"),
            (["--password", self.url(protected)], {"WOOF_PASSWORD": "wrong"},
             "the password was refused"),
            ([self.url(gone)], {}, "410 Gone: the offered file is gone"),
            ([self.url(finished)], {}, "nothing listens there"),
            (["-x", self.url(protected)], {}, "asks for a password"),
        ]
        for argv, environ, message in table:
            with self.subTest(argv=argv):
                status, _, stderr = self.client(*argv, environ=environ)
                self.assert_error_is_only_line(status, stderr, message)
                self.assertEqual(tree_of(self.dest), {})

    def test_the_password_is_sent_and_never_prompted_without_a_terminal(self):
        run = self.start(self.make_file("p.txt", b"protected"), count=0,
                         password_digest=woof.password_digest("s\u00e9same:1"))
        status, _, stderr = self.client("--password", self.url(run),
                                        environ={"WOOF_PASSWORD": "s\u00e9same:1"})
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"p.txt": b"protected"})
        env = dict(os.environ)
        env.pop("WOOF_PASSWORD", None)
        result = self.client_process(["--password", self.url(run)], env=env)
        stderr = result.stderr.decode()
        self.assert_error_is_only_line(result.returncode, stderr, "WOOF_PASSWORD")

    def test_a_password_is_not_sent_to_another_origin_after_a_redirect(self):
        other = ScriptedHttpServer(self, lambda handler: send_body(handler, 200, b"x"))
        first = ScriptedHttpServer(self, lambda handler: send_body(
            handler, 302, b"", ("Location", other.url("/x.txt"))))
        status, _, stderr = self.client("--password", first.url("/"),
                                        environ={"WOOF_PASSWORD": "pw"})
        self.assertEqual(status, 0, stderr)
        self.assertIn("Authorization", first.requests[0][2])
        self.assertNotIn("Authorization", other.requests[0][2])


class ClientTlsTests(ClientTestCase, ThrowawayCertificateTestCase):

    def test_the_pin_woof_printed_is_checked(self):
        data = os.urandom(100000)
        run = self.start(self.make_file("t.bin", data), count=0, https=True)
        url = "https://127.0.0.1:%d/t.bin" % run.server.port
        status, _, stderr = self.client("--pin", run.server.tls.pin, url)
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"t.bin": data})
        status, _, stderr = self.client(url)
        self.assert_error_is_only_line(status, stderr, "not one this machine trusts", "--pin")
        status, _, stderr = self.client("--insecure", "-o", "-", url)
        self.assertEqual(status, 0, stderr)
        self.assertEqual(stderr.splitlines()[0].split(":")[:2], ["woof", " warning"])
        self.assertIn("--insecure", stderr)

    def test_a_wrong_pin_sends_nothing_at_all(self):
        certificate_path, key_path, _ = self.write_certificate(["127.0.0.1"])
        server = RecordingTlsServer(self, certificate_path, key_path)
        other_pin = woof.public_key_pin(ssl.PEM_cert_to_DER_cert(
            woof.throwaway_certificate(["127.0.0.1"])[0]))
        status, _, stderr = self.client("--pin", other_pin,
                                        "https://127.0.0.1:%d/x" % server.port)
        self.assert_error_is_only_line(status, stderr, "not the pinned " + other_pin,
                                   "nothing was sent")
        server.thread.join(DEADLINE)
        self.assertEqual(server.received, b"")
        self.assertEqual(tree_of(self.dest), {})

    def test_cacert_trusts_the_certificate_for_its_address(self):
        certificate_path, key_path, _ = self.write_certificate(["127.0.0.1", "localhost"])
        run = self.start(self.make_file("c.txt", b"checked"), count=0,
                         certificate=certificate_path, key=key_path)
        url = "https://127.0.0.1:%d/" % run.server.port
        status, _, stderr = self.client("--cacert", certificate_path, url)
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"c.txt": b"checked"})
        status, _, stderr = self.client("--cacert", certificate_path,
                                        "https://localhost:%d/" % run.server.port)
        self.assertEqual(status, 0, stderr)  # the certificate names localhost too
        other = self.make_file("other.pem", woof.throwaway_certificate(["127.0.0.1"])[0].encode())
        status, _, stderr = self.client("--cacert", other, url)
        self.assert_error_is_only_line(status, stderr, "not one this machine trusts")

    def test_sending_over_https_with_a_pin(self):
        run = self.receive(https=True)
        path = self.make_file("s\u00e9nd.bin", os.urandom(3 << 20))
        status, stdout, stderr = self.client("--pin", run.server.tls.pin,
                                             "https://127.0.0.1:%d/" % run.server.port, path)
        self.assertEqual(status, 0, stderr)
        with open(path, "rb") as handle:
            data = handle.read()
        self.assertEqual(stdout, sent_line("s\u00e9nd.bin", "3.0 MiB", data))
        self.assertEqual(self.inbox_files(), {"s\u00e9nd.bin": data})


class ClientUnpackTests(ClientTestCase):

    def make_plain_tree(self):
        """Files, a large one, an empty one and an empty folder: nothing odd."""
        root = os.path.join(self.tmp, "proj \u00e9t\u00e9")
        self.make_file("a.txt", b"alpha\n", folder=root)
        self.make_file("sub/deeper/b.bin", os.urandom(300000), folder=root)
        self.make_file("sub/empty.txt", b"", folder=root)
        os.makedirs(os.path.join(root, "vide"))
        return root

    def test_every_format_woof_offers_unpacks_byte_exact(self):
        root = self.make_plain_tree()
        expected = {"proj \u00e9t\u00e9/" + name: data for name, data in tree_of(root).items()}
        expected["proj \u00e9t\u00e9"] = None
        for compression in ("gz", "bz2", "xz", "zip", "tar"):
            with self.subTest(compression=compression):
                folder = os.path.join(self.tmp, "into-" + compression)
                os.mkdir(folder)
                run = self.start(woof.ArchiveOffer([root], compression))
                status, _, stderr = self.client("-x", self.url(run), folder=folder)
                self.assertEqual(status, 0, stderr)
                self.assertEqual(tree_of(folder), expected)
                self.assertIn('Unpacked 3 files (293.0 KiB): "proj \u00e9t\u00e9"', stderr)

    def test_nothing_is_overwritten_and_existing_folders_are_never_entered(self):
        if NO_SYMLINKS:
            self.skipTest(NO_SYMLINKS)
        outside = os.path.join(self.tmp, "outside")
        os.mkdir(outside)
        self.make_file("proj/a.txt", b"mine", folder=self.dest)
        os.mkdir(os.path.join(self.dest, "real"))
        os.symlink("real", os.path.join(self.dest, "inner"))
        archive = make_tar(os.path.join(self.tmp, "a.tar"), [
            (tar_info("proj/a.txt"), b"theirs"),
            (tar_info("inner/x.txt"), b"x"),
            (tar_info("run.sh", mode=0o4755), b"#!/bin/sh\n"),
        ])
        run = self.start(archive)
        status, _, stderr = self.client("-x", self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {
            "proj": None, "proj/a.txt": b"mine", "real": None, "inner": "->real",
            "proj (1)": None, "proj (1)/a.txt": b"theirs",
            "inner (1)": None, "inner (1)/x.txt": b"x", "run.sh": b"#!/bin/sh\n"})
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dest, "run.sh")).st_mode), 0o755)
        self.assertEqual(os.stat(os.path.join(self.dest, "run.sh")).st_mtime, 1700000000)

    def test_links_that_stay_inside_are_kept(self):
        if NO_SYMLINKS:
            self.skipTest(NO_SYMLINKS)
        archive = make_tar(os.path.join(self.tmp, "l.tar.gz"), [
            (tar_info("v1/data.txt"), b"one"),
            (tar_info("latest", tarfile.SYMTYPE, "v1"), None),
            (tar_info("v1/again.txt", tarfile.LNKTYPE, "v1/data.txt"), None),
        ], "gz")
        run = self.start(archive)
        status, _, stderr = self.client("-x", self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"v1": None, "v1/data.txt": b"one",
                                              "v1/again.txt": b"one", "latest": "->v1"})

    def test_hostile_tars_are_refused_whole_and_leave_nothing(self):
        outside = os.path.join(self.tmp, "outside")
        os.mkdir(outside)
        os.symlink(outside, os.path.join(self.dest, "exit"))
        absolute_target = os.path.join(outside, "abs.txt")
        fine = (tar_info("fine.txt"), b"fine")
        table = [
            ("dotdot", [fine, (tar_info("../escape.txt"), b"x")], "leads outside the folder"),
            ("deep dotdot", [fine, (tar_info("a/../../escape.txt"), b"x")], "leads outside"),
            ("link out", [fine, (tar_info("l", tarfile.SYMTYPE, "../outside"), None)],
             "links outside the folder"),
            ("absolute link", [fine, (tar_info("l", tarfile.SYMTYPE, outside), None)],
             "links to an absolute path"),
            ("hard link out", [fine, (tar_info("h", tarfile.LNKTYPE, "../outside/x"), None)],
             "links outside the folder"),
            ("device", [fine, (tar_info("null", tarfile.CHRTYPE), None)], "is a device file"),
            ("fifo", [fine, (tar_info("pipe", tarfile.FIFOTYPE), None)], "is a FIFO"),
            ("through an existing link", [fine, (tar_info("exit/evil.txt"), b"x")],
             "goes through a link that leads outside"),
            ("a link chain out", [fine, (tar_info("d", tarfile.SYMTYPE, "."), None),
                                  (tar_info("e", tarfile.SYMTYPE, "d/.."), None)],
             "links outside the folder"),
        ]
        before = tree_of(self.dest)
        for label, members, message in table:
            with self.subTest(label):
                if NO_SYMLINKS and label in ("through an existing link", "a link chain out"):
                    self.skipTest(NO_SYMLINKS)
                run = self.start(make_tar(os.path.join(self.tmp, label + ".tar"), members))
                status, _, stderr = self.client("-x", self.url(run))
                self.assert_error_is_only_line(status, stderr, "refusing the archive", message,
                                           "nothing was unpacked")
                self.assertEqual(tree_of(self.dest), before)
                self.assertEqual(os.listdir(outside), [])
        drive, absolute_target = os.path.splitdrive(absolute_target)
        if drive:  # Windows: a name on a drive cannot be made relative
            run = self.start(make_tar(os.path.join(self.tmp, "drive.tar"),
                                      [(tar_info(drive + absolute_target), b"x")]))
            status, _, stderr = self.client("-x", self.url(run))
            self.assert_error_is_only_line(status, stderr, "is an absolute path", "nothing was")
        run = self.start(make_tar(os.path.join(self.tmp, "abs.tar"),
                                  [(tar_info(absolute_target), b"made relative")]))
        status, _, stderr = self.client("-x", self.url(run))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(os.listdir(outside), [])
        relative = absolute_target.replace(os.sep, "/").lstrip("/")
        self.assertEqual(tree_of(self.dest)[relative], b"made relative")

    def test_hostile_zips_are_refused_whole(self):
        table = [
            ("dotdot", "../evil.txt", 0o100644, b"x", "leads outside"),
            ("link out", "l", 0o120777, b"../../outside", "links outside"),
            ("device", "dev", 0o020644, b"", "device file"),
        ]
        for label, name, mode, data, message in table:
            with self.subTest(label):
                path = os.path.join(self.tmp, label + ".zip")
                with zipfile.ZipFile(path, "w") as archive:
                    archive.writestr("fine.txt", b"fine")
                    info = zipfile.ZipInfo(name)
                    info.create_system = 3
                    info.external_attr = mode << 16
                    archive.writestr(info, data)
                run = self.start(path)
                status, _, stderr = self.client("-x", self.url(run))
                self.assert_error_is_only_line(status, stderr, "refusing the archive", message)
                self.assertEqual(tree_of(self.dest), {})

    def test_a_zip_is_fetched_resumably_then_unpacked(self):
        payload = io.BytesIO()
        with zipfile.ZipFile(payload, "w") as archive:
            archive.writestr("z/one.txt", b"one")
            archive.writestr("z/two.bin", os.urandom(200000))
        server = ResourceServer(self, payload.getvalue(), cut_after=50000)
        status, _, stderr = self.client("-x", server.url("/z.zip"))
        self.assert_error_is_only_line(status, stderr, "run the same command again to continue")
        status, _, stderr = self.client("-x", server.url("/z.zip"))
        self.assertEqual(status, 0, stderr)
        with zipfile.ZipFile(payload) as archive:
            expected = {"z": None, "z/one.txt": b"one", "z/two.bin": archive.read("z/two.bin")}
        self.assertEqual(tree_of(self.dest), expected)

    def test_a_tar_cut_short_unpacks_nothing(self):
        archive = make_tar(os.path.join(self.tmp, "t.tar"), [
            (tar_info("first.txt"), b"1" * 20000), (tar_info("second.txt"), b"2" * 20000)])
        with open(archive, "rb") as handle:
            server = ResourceServer(self, handle.read(), cut_after=30000, ranges=False)
        status, _, stderr = self.client("-x", server.url("/t.tar"))
        self.assert_error_is_only_line(status, stderr, "broke off", "nothing was unpacked")
        self.assertEqual(tree_of(self.dest), {})

    def test_what_is_no_archive_is_refused(self):
        run = self.start(self.make_file("notes.txt", b"just text\n" * 100))
        status, _, stderr = self.client("-x", self.url(run))
        self.assert_error_is_only_line(status, stderr, "cannot unpack the archive")
        self.assertEqual(tree_of(self.dest), {})


class ClientSendTests(ClientTestCase):

    def test_files_and_a_folder_reach_a_receiving_woof_byte_exact(self):
        run = self.receive()
        outgoing = os.path.join(self.tmp, "outgoing")
        photos = os.path.join(outgoing, "ph\u00f6tos")
        expected = {
            "ph\u00f6tos/a.jpg": os.urandom(2 << 20),
            "ph\u00f6tos/2024/\u65e5 #1.txt": b"day one\n",
            "ph\u00f6tos/2024/empty": b"",
            # Windows takes no " in a name: ' there.
            "ph\u00f6tos/odd %squoted%s name.txt" % (("'",) * 2 if os.name == "nt" else ('"',) * 2):
                b"quoted\n",
        }
        for name, data in expected.items():
            self.make_file(name, data, folder=outgoing)
        if SYMLINKS:
            os.symlink("/etc/passwd", os.path.join(photos, "link"))
        single = self.make_file("single %22.bin", os.urandom(100000))
        status, stdout, stderr = self.client(self.url(run, "/"), photos, single)
        self.assertEqual(status, 0, stderr)
        with open(single, "rb") as handle:
            expected["single %22.bin"] = handle.read()
        self.assertEqual(self.inbox_files(), expected)
        self.assertEqual(sorted(stdout.decode().splitlines()), sorted(
            sent_line(name, woof.format_size(len(data)), data).decode().rstrip("\n")
            for name, data in expected.items()))
        if SYMLINKS:
            self.assertIn("left out", stderr)
        self.assertIn('Sent "5 files"', stderr)
        run.wait()  # one upload, counted

    def test_a_refused_upload_is_refused_before_the_body_is_sent(self):
        run = self.receive(max_upload=1000)
        big = self.make_file("big.bin", os.urandom(50 << 20))
        status, _, stderr = self.client(self.url(run, "/"), big)
        self.assert_error_is_only_line(status, stderr, "413", "the upload is 50.0 MiB, more than")
        self.assertEqual(self.inbox_files(), {})
        wait_until(lambda: '"POST /big.bin HTTP/1.1" 413' in self.log_text(),
                   message="the 413 logged")

    def test_sending_to_a_password_protected_woof(self):
        run = self.receive(password_digest=woof.password_digest("pw"))
        path = self.make_file("x.txt", b"x")
        status, _, stderr = self.client(self.url(run, "/"), path)
        self.assert_error_is_only_line(status, stderr, "asks for a password")
        status, stdout, stderr = self.client("--password", self.url(run, "/"), path,
                                             environ={"WOOF_PASSWORD": "pw"})
        self.assertEqual((status, stdout), (0, sent_line("x.txt", "1 B", b"x")), stderr)

    def test_another_server_gets_a_single_file_by_put(self):
        stored = {}

        def answer(handler):
            if handler.command == "PUT":
                stored[handler.path] = server.requests[-1][3]
                send_body(handler, 201, b"created\n")
            else:
                send_body(handler, 404, b"no\n")
        server = ScriptedHttpServer(self, answer)
        data = os.urandom(300000)
        path = self.make_file("r\u00e9sum\u00e9.pdf", data)
        for url, expected_path in ((server.url("/up/"), "/up/r%C3%A9sum%C3%A9.pdf"),
                                   (server.url("/exact.pdf"), "/exact.pdf")):
            with self.subTest(url=url):
                status, stdout, stderr = self.client(url, path)
                self.assertEqual((status, stdout), (0, b""), stderr)
                self.assertEqual(stored[expected_path], data)
                self.assertIn("201 Created", stderr)
        folder = os.path.join(self.tmp, "folder")
        self.make_file("f.txt", b"f", folder=folder)
        status, _, stderr = self.client(server.url("/up/"), folder)
        self.assert_error_is_only_line(status, stderr, "no woof receiving files")

    def test_a_woof_offering_a_download_refuses_what_is_sent(self):
        run = self.start(self.make_file("offer.txt"))
        status, _, stderr = self.client(self.url(run), self.make_file("x.txt"))
        self.assert_error_is_only_line(status, stderr, "405", "only GET and HEAD")

    def test_empty_folders_are_left_out_in_one_warning(self):
        run = self.receive(count=0)
        outgoing = os.path.join(self.tmp, "outgoing")
        self.make_file("a.txt", b"a", folder=outgoing)
        os.makedirs(os.path.join(outgoing, "vide", "deeper"))
        os.makedirs(os.path.join(outgoing, "leer"))
        status, _, stderr = self.client(self.url(run, "/"), outgoing)
        self.assertEqual(status, 0, stderr)
        warnings = [line for line in stderr.splitlines() if line.startswith("woof: warning")]
        self.assertEqual(len(warnings), 1, stderr)
        self.assertIn('2 empty folders, "outgoing/leer", "outgoing/vide/deeper"', warnings[0])
        self.assertEqual(self.inbox_files(), {"outgoing/a.txt": b"a"})
        nothing = os.path.join(self.tmp, "nothing")
        os.makedirs(os.path.join(nothing, "empty"))
        status, _, stderr = self.client(self.url(run, "/"), nothing)
        self.assert_error_is_only_line(status, stderr, "no file to send", "no empty folders")

    def test_missing_files_are_refused_before_anything_is_sent(self):
        run = self.receive()
        status, _, stderr = self.client(self.url(run, "/"), os.path.join(self.tmp, "absent"))
        self.assert_error_is_only_line(status, stderr, "cannot read", "absent")
        self.assertEqual(self.log_text().count('"'), 0)


class ClientCommandLineTests(ClientTestCase):

    def test_a_url_first_switches_to_client_mode_unless_a_file_has_that_name(self):
        parser = woof.build_parser()
        table = [(["http://h/x"], True), (["HTTPS://h/"], True), (["file.txt"], False),
                 (["-o", "x", "file.txt"], True), (["ftp://h/"], False), (["-U"], False),
                 (["http://h/", "a", "b"], True)]
        for argv, expected in table:
            with self.subTest(argv=argv):
                args = woof.parse_command_line(parser, argv)
                self.assertEqual(woof.is_client_call(args), expected)
        run = self.start(self.make_file("f.txt", b"over the wire"))
        url = self.url(run)
        if os.name == "nt":
            self.skipTest("Windows takes no ':' in a file name: no file has a URL's name")
        self.make_file(url.replace("://", ":/", 1), b"a local file", folder=self.tmp)
        child = subprocess.Popen([sys.executable, WOOF_PATH, "-i", "127.0.0.1", "-p", "0", url],
                                 cwd=self.tmp,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        self.assertTrue(child.stdout.readline().startswith(b"Now serving on http://"))
        for stream in (child.stdout, child.stderr):
            self.addCleanup(stream.close)
        result = self.client_process([url])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(tree_of(self.dest), {"f.txt": b"over the wire"})
        self.assertEqual(result.stdout, b"")

    def test_client_mistakes_are_usage_errors(self):
        pin = "sha256//" + base64.b64encode(b"k" * 32).decode()
        table = [["-o", "x", "file.txt"], ["-x", "-o", "a", "http://h/"],
                 ["--pin", "sha256//short", "https://h/"], ["--pin", pin, "http://h/"],
                 ["--force", "http://h/"], ["-s", "http://h/"], ["--https", "http://h/"],
                 ["-o", "x", "http://h/", "file"], ["--pin", pin, "--insecure", "https://h/"],
                 ["--cacert", "c.pem", "http://h/"], ["-x", "http://h/", "file"],
                 ["--no-unpack-limit", "http://h/"], ["--no-unpack-limit", "file.txt"]]
        for argv in table:
            with self.subTest(argv=argv):
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    status = woof.main(argv, config_paths=())
                self.assertEqual(status, 2, stderr.getvalue())
                self.assertRegex(stderr.getvalue().strip().splitlines()[-1],
                                 r"^woof(\.py)?: error: ")

    def test_a_url_without_http_gets_a_hint(self):
        for first in ("127.0.0.1:8080/x", "[::1]:8080", "my-box.lan:8080/a b.txt"):
            with self.subTest(first=first):
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    status = woof.main([first], config_paths=())
                lines = stderr.getvalue().strip().splitlines()
                self.assertEqual((status, len(lines)), (2, 1), stderr.getvalue())
                self.assertIn("give the URL with http://, as in http://" + first, lines[0])
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            self.assertEqual(woof.main([os.path.join(self.tmp, "absent.txt")],
                                       config_paths=()), 1)
        self.assertNotIn("http://", stderr.getvalue())

    def test_help_tells_that_a_file_of_that_name_wins(self):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.assertEqual(woof.main(["-h"], config_paths=()), 0)
        text = " ".join(stdout.getvalue().split())
        for fragment in ("client mode", "a file that exists under that name is offered instead",
                         "--pin sha256//KEY", "-x, --extract", "woof.py URL FILE...",
                         "--no-unpack-limit"):
            with self.subTest(fragment=fragment):
                self.assertIn(fragment, text)

    @unittest.skipUnless(hasattr(os, "openpty"), "needs a pseudo-terminal")
    def test_progress_is_live_on_a_terminal_and_silent_with_q(self):
        run = self.start(self.make_file("p.bin", os.urandom(3 << 20)), count=0)
        for quiet in (False, True):
            with self.subTest(quiet=quiet):
                master, slave = os.openpty()
                try:
                    child = subprocess.Popen(
                        [sys.executable, WOOF_PATH, "-o", "-"] + (["-q"] if quiet else [])
                        + [self.url(run)], cwd=self.dest, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=slave,
                        env=dict(os.environ, PYTHONIOENCODING="utf-8"))
                    os.close(slave)
                    slave = None
                    shown = b""
                    while True:
                        try:
                            chunk = os.read(master, 4096)
                        except OSError:  # the terminal closed with the child
                            break
                        if not chunk:
                            break
                        shown += chunk
                    self.assertEqual(child.wait(DEADLINE), 0, shown)
                finally:
                    os.close(master)
                    if slave is not None:
                        os.close(slave)
                text = shown.decode("utf-8", "replace")
                if quiet:
                    self.assertEqual(text, "")
                else:
                    self.assertRegex(text, r'^\rFetching "p\.bin" \u2026 0 B of 3\.0 MiB  0%')
                    self.assertRegex(text, r'\rFetched "p\.bin" \(3\.0 MiB in [0-9.]+ s, ')


class RawServer:
    """A TCP server on 127.0.0.1, any free port, for servers that break HTTP:
    each connection's request head is read, then answer(connection, head)
    writes whatever the test wants.  `stopping` is set at cleanup, so an
    answer that trickles can end."""

    def __init__(self, test, answer):
        outer = self
        self.stopping = threading.Event()
        self.heads = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(DEADLINE)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        chunk = self.request.recv(65536)
                        if not chunk:
                            return
                        head += chunk
                    outer.heads.append(head)
                    answer(self.request, head)
                except OSError:
                    pass  # the client went away

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        thread.daemon = True
        thread.start()
        test.addCleanup(self.stop)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.server.server_address[1], path)

    def trickle(self, connection, data, interval=0.05):
        """Send data a byte at a time, one every interval seconds, until stopped."""
        for byte in data:
            if self.stopping.wait(interval):
                return
            connection.sendall(bytes([byte]))

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class ClientHostileServerTests(ClientTestCase):
    """Client mode against servers that lie, stall or try to reach the terminal."""

    def test_what_the_status_line_says_cannot_reach_the_terminal(self):
        hostile = "\x1b]0;PWNED\x07\x1b[2J"
        table = [
            ("reason", b"HTTP/1.1 500 " + hostile.encode() + b"\r\nContent-Length: 0\r\n\r\n",
             ()),
            ("status line", b"\x1b[2J" + hostile.encode() + b"\r\n\r\n", ()),
            ("reason of a PUT", b"HTTP/1.1 201 " + hostile.encode()
             + b"\r\nContent-Length: 0\r\n\r\n", ("file",)),
        ]
        sent = self.make_file("sent.txt", b"sent")
        for label, answer, extra in table:
            with self.subTest(label):
                server = RawServer(self, lambda connection, head: connection.sendall(answer))
                paths = (sent,) if extra else ()
                status, _, stderr = self.client(server.url("/x"), *paths)
                self.assertNotIn("\x1b", stderr)
                self.assertNotIn("\x07", stderr)
                self.assertIn("\\x1b]0;PWNED\\x07", stderr)
                if not extra:
                    self.assert_error_is_only_line(status, stderr)
                self.assertEqual(self.visible_files(), {})

    def resume_after_a_change(self, validator_header, first, second):
        """A server that drops the first GET after 100000 bytes, then ignores
        If-Range: it answers the Range with a 206 of a new version."""
        old, new = os.urandom(300000), os.urandom(300000)

        def answer(handler):
            asked = handler.headers.get("Range")
            if asked is None and len(server.requests) == 1:
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(old)))
                handler.send_header(validator_header, first)
                handler.send_header("Accept-Ranges", "bytes")
                handler.end_headers()
                handler.wfile.write(old[:100000])
                handler.close_connection = True
                return
            if asked is None:
                send_body(handler, 200, new, (validator_header, second))
                return
            start = int(asked.split("=")[1].rstrip("-"))
            send_body(handler, 206, new[start:], (validator_header, second),
                      ("Content-Range", "bytes %d-%d/%d" % (start, len(new) - 1, len(new))))
        server = ScriptedHttpServer(self, answer)
        self.assertEqual(self.client(server.url("/v.bin"))[0], 1)
        status, _, stderr = self.client(server.url("/v.bin"))
        self.assertEqual(status, 0, stderr)
        self.assertNotIn("resumed", stderr)
        self.assertEqual(tree_of(self.dest), {"v.bin": new})
        self.assertEqual(server.requests[1][2]["If-Range"], first)

    def test_a_206_of_another_etag_starts_over(self):
        self.resume_after_a_change("ETag", '"v1"', '"v2"')

    def test_a_206_of_another_date_starts_over(self):
        self.resume_after_a_change("Last-Modified", LAST_MODIFIED,
                                   "Tue, 02 Jan 2024 00:00:00 GMT")

    def test_a_head_cut_before_its_end_saves_nothing(self):
        server = RawServer(self, lambda connection, head: connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"))
        for argv in ((), ("-o", "-"), ("-x",)):
            with self.subTest(argv=argv):
                status, stdout, stderr = self.client(*(argv + (server.url("/cut.txt"),)))
                self.assert_error_is_only_line(status, stderr, "head")
                self.assertEqual(stdout, b"")
                self.assertEqual(tree_of(self.dest), {})

    def trickled(self, answer_head):
        """Run woof.py --timeout 1 against a server that trickles; return its stderr."""
        def answer(connection, head):
            connection.sendall(answer_head)
            server.trickle(connection, b"x" * 100000)
        server = RawServer(self, answer)
        started = time.monotonic()
        result = self.client_process(["--timeout", "1", server.url("/slow.bin")])
        stderr = result.stderr.decode()
        self.assert_error_is_only_line(result.returncode, stderr, "too slowly")
        self.assertLess(time.monotonic() - started, DEADLINE)
        self.assertEqual(tree_of(self.dest), {})
        return stderr

    def test_a_trickling_body_ends_with_the_timeout(self):
        self.trickled(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")

    def test_a_trickling_head_ends_with_the_timeout(self):
        self.trickled(b"HTTP/1.1 200 OK\r\nX-Slow: ")

    def test_a_slow_but_steady_download_is_not_cut(self):
        data = os.urandom(80000)

        def answer(connection, head):
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data))
            for start in range(0, len(data), 8000):  # 8000 bytes every 0.3 s: 3 s in all
                if server.stopping.wait(0.3):
                    return
                connection.sendall(data[start:start + 8000])
        server = RawServer(self, answer)
        status, _, stderr = self.client("--timeout", "2.5", server.url("/steady.bin"))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(tree_of(self.dest), {"steady.bin": data})


def tar_gz_bytes(members):
    """A tar.gz, in memory, of (TarInfo, data or None) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def gzipped_tar_of_zeros(name, size):
    """A tar.gz of one file of `size` zeros, made without holding them."""
    info = tar_info(name)
    info.size = size
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    pieces = [packer.compress(info.tobuf(tarfile.GNU_FORMAT))]
    for start in range(0, size, 1 << 20):
        pieces.append(packer.compress(bytes(min(1 << 20, size - start))))
    pieces.append(packer.compress(b"\0" * (-size % 512 + 1024)))
    pieces.append(packer.flush())
    return b"".join(pieces)


def gnu_sparse_tar(name, data, real_size):
    """An old-GNU tar of one sparse member: data at offset 0, then a hole up
    to real_size (the format tarfile reads but cannot write)."""
    info = tar_info(name)
    info.size = len(data)
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:398] = b"%011o\0" % 0                  # the one region's offset
    header[398:410] = b"%011o\0" % len(data)          # and its length
    header[483:495] = b"%011o\0" % real_size          # the file's real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    padding = b"\0" * (-len(data) % 512)
    return bytes(header) + data + padding + b"\0" * 1024


class ClientUnpackBoundTests(ClientTestCase):
    """-x writes no more than the archive can honestly hold."""

    def test_a_compression_bomb_is_stopped_with_one_line(self):
        size = 100 << 20
        bomb_tar, bomb_zip = gzipped_tar_of_zeros("zeros.bin", size), io.BytesIO()
        with zipfile.ZipFile(bomb_zip, "w", zipfile.ZIP_DEFLATED) as archive:
            with archive.open("zeros.bin", "w") as member:
                for _ in range(size >> 20):
                    member.write(bytes(1 << 20))
        for label, payload in (("tar.gz", bomb_tar), ("zip", bomb_zip.getvalue())):
            with self.subTest(label):
                self.assertLess(len(payload), 300000)
                server = ResourceServer(self, payload)
                status, _, stderr = self.client("-x", server.url("/bomb." + label))
                self.assert_error_is_only_line(status, stderr, "100 times",
                                           "--no-unpack-limit", "nothing was unpacked")
                self.assertEqual(tree_of(self.dest), {})
        server = ResourceServer(self, bomb_tar)
        status, _, stderr = self.client("-x", "--no-unpack-limit", server.url("/bomb.tar.gz"))
        self.assertEqual(status, 0, stderr)
        self.assertEqual(os.path.getsize(os.path.join(self.dest, "zeros.bin")), size)

    def test_hard_links_are_unpacked_as_links(self):
        data = os.urandom(1 << 20)
        members = [(tar_info("one.bin"), data)] + [
            (tar_info("link%03d.bin" % number, tarfile.LNKTYPE, "one.bin"), None)
            for number in range(150)]
        server = ResourceServer(self, tar_gz_bytes(members))
        status, _, stderr = self.client("-x", server.url("/links.tar.gz"))
        self.assertEqual(status, 0, stderr)
        found = tree_of(self.dest)
        self.assertEqual(len(found), 151)
        first = os.stat(os.path.join(self.dest, "one.bin"))
        self.assertEqual(first.st_nlink, 151)
        for name in found:
            self.assertEqual(os.stat(os.path.join(self.dest, name)).st_ino, first.st_ino)

    def test_hard_links_copied_where_links_fail_count_against_the_bound(self):
        members = [(tar_info("one.bin"), b"\0" * (1 << 20))] + [
            (tar_info("link%03d.bin" % number, tarfile.LNKTYPE, "one.bin"), None)
            for number in range(150)]
        payload = tar_gz_bytes(members)
        self.assertLess(len(payload), 4096)
        server = ResourceServer(self, payload)
        real_link = os.link

        def no_links(source, target, *args, **kwargs):
            if os.path.basename(str(target)).startswith(".woof-"):
                raise OSError(errno.EPERM, "Operation not permitted")
            return real_link(source, target, *args, **kwargs)
        with mock.patch.object(os, "link", no_links):
            status, _, stderr = self.client("-x", server.url("/links.tar.gz"))
        self.assert_error_is_only_line(status, stderr, "100 times", "nothing was unpacked")
        self.assertEqual(tree_of(self.dest), {})

    def test_a_gnu_sparse_member_is_written_sparsely(self):
        real_size = 1 << 30
        payload = gzip.compress(gnu_sparse_tar("sparse.img", b"start" * 100, real_size), 9)
        self.assertLess(len(payload), 200)
        server = ResourceServer(self, payload)
        status, _, stderr = self.client("-x", server.url("/sparse.tar.gz"))
        self.assertEqual(status, 0, stderr)
        path = os.path.join(self.dest, "sparse.img")
        self.assertEqual(os.path.getsize(path), real_size)
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(501), b"start" * 100 + b"\0")
            handle.seek(real_size - 10)
            self.assertEqual(handle.read(), b"\0" * 10)
        if hasattr(os.stat_result, "st_blocks"):
            self.assertLess(os.stat(path).st_blocks * 512, 16 << 20)

    def test_sizes_beyond_the_free_space_are_refused_before_writing(self):
        info = tar_info("huge.bin")
        info.size = 1 << 50
        payload = info.tobuf(tarfile.PAX_FORMAT) + b"x" * 100000
        server = ResourceServer(self, payload)
        status, _, stderr = self.client("-x", server.url("/huge.tar"))
        self.assert_error_is_only_line(status, stderr, "1024.0 TiB", "free", "nothing was unpacked")
        self.assertEqual(tree_of(self.dest), {})


# ---------------------------------------------------------------------------
# Start-up: woof.py run as a program starts again from its bytecode cache
# ---------------------------------------------------------------------------

def file_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def command_line_of(pid):
    """The arguments a running process has now (Linux's /proc), exec() included."""
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().decode("utf-8", "surrogateescape").split("\0")[:-1]


class StartUpPartsTests(WoofTestCase):
    """The parts of the start-up that need no restart to be seen."""

    def test_the_options_before_the_script_are_taken_as_given_and_only_for_a_script(self):
        python = sys.executable
        table = [([python, "woof.py", "a"], ["woof.py", "a"], []),
                 ([python, "-W", "error", "-X", "utf8", "woof.py"], ["woof.py"],
                  ["-W", "error", "-X", "utf8"]),
                 ([python, "-Werror", "-Xdev", "-OO", "-Bu", "-W", "ignore", "woof.py", "-q"],
                  ["woof.py", "-q"], ["-Werror", "-Xdev", "-OO", "-Bu", "-W", "ignore"]),
                 ([python, "-sWerror", "woof.py"], ["woof.py"], ["-sWerror"]),
                 ([python, "--check-hash-based-pycs", "never", "-I", "woof.py"], ["woof.py"],
                  ["--check-hash-based-pycs", "never", "-I"]),
                 ([python, "-c", "import runpy", "woof.py"], ["woof.py"], None),
                 ([python, "-Sc", "import runpy", "woof.py"], ["woof.py"], None),
                 ([python, "-cimport runpy", "woof.py"], ["woof.py"], None),
                 ([python, "-m", "pdb", "woof.py"], ["woof.py"], None),
                 ([python, "host.py", "woof.py"], ["woof.py"], None),
                 ([python, "--help", "woof.py"], ["woof.py"], None),
                 ([python, "woof.py", "a"], ["woof.py", "b"], None),
                 ([python, "woof.py"], ["other.py", "woof.py"], None),
                 ([python, "woof.py"], [], None)]
        for original, argv, expected in table:
            with self.subTest(original=original, argv=argv):
                self.assertEqual(woof.options_before(original, argv), expected)

    @unittest.skipUnless(woof.EXEC_REPLACES_PROCESS, "woof.py starts again only where exec() "
                                                     "replaces it")
    def test_a_cache_folder_of_another_user_is_neither_used_nor_made(self):
        cache = os.path.join(self.tmp, "cache", "woof")
        environ = {"XDG_CACHE_HOME": os.path.dirname(cache)}
        os.makedirs(cache, 0o700)
        with mock.patch.object(woof.os, "geteuid", return_value=os.geteuid() + 1):
            self.assertIsNone(woof.open_bytecode_cache_folder(environ))
            shutil.rmtree(cache)
            self.assertIsNone(woof.open_bytecode_cache_folder(environ))
        self.assertFalse(os.path.exists(cache))
        with mock.patch.object(woof.os, "access", return_value=False):  # root may write anyway
            self.assertIsNone(woof.open_bytecode_cache_folder(environ))
        descriptor = woof.open_bytecode_cache_folder(environ)
        self.addCleanup(os.close, descriptor)
        self.assertEqual(stat.S_IMODE(os.fstat(descriptor).st_mode), 0o700)

    @unittest.skipUnless(woof.EXEC_REPLACES_PROCESS, "woof.py starts again only where exec() "
                                                     "replaces it")
    def test_where_the_new_python_cannot_start_woof_runs_on_in_the_first(self):
        environ = {"XDG_CACHE_HOME": os.path.join(self.tmp, "cache")}
        opened = []

        def no_exec(program, argv, environment):
            opened.append(int(argv[argv.index("-c") + 4]))
            raise OSError(errno.E2BIG, "Argument list too long")

        with mock.patch.object(woof, "restart_would_pay", return_value=True), \
                mock.patch.object(woof, "options_before_script", return_value=["-W", "error"]), \
                mock.patch.object(woof.os, "execve", side_effect=no_exec):
            self.assertIsNone(woof.restart_without_parse_tree(WOOF_PATH, environ))
        [descriptor] = opened
        with self.assertRaises(OSError):
            os.fstat(descriptor)  # closed again


@unittest.skipUnless(woof.SCRIPT_PARSE_TREE_KEPT and woof.EXEC_REPLACES_PROCESS,
                     "woof.py starts again only on CPython 3.9 on, where exec() replaces it")
@unittest.skipUnless(os.path.exists("/proc/self/cmdline"), "needs /proc to see the restart")
class StartUpTests(WoofTestCase):

    def setUp(self):
        super().setUp()
        self.script = self.make_file(os.path.join("program", "woof.py"), file_bytes(WOOF_PATH))
        self.cache = os.path.join(self.tmp, "cache", "woof")
        self.environ = dict(os.environ, XDG_CACHE_HOME=os.path.dirname(self.cache))
        for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONINSPECT", "PYTHONOPTIMIZE",
                     "PYTHONSAFEPATH", "PYTHONWARNINGS", "PYTHONDEVMODE"):
            self.environ.pop(name, None)

    def offer_and_take(self, *python_options, env=None, cwd=None, script=None, stdin=None):
        """Offer a file with the copy of woof.py (python_options before it) and
        take it; return the command line woof had while it served.  (-i shows
        the SystemExit that ends woof before its prompt, as Python always did.)"""
        offered = self.make_file("offered.txt", b"offered once\n")
        child = WoofProcess(self, list(python_options) + [script or self.script, "-i",
                                                          "127.0.0.1", "-p", "0", offered],
                            script=None, env=env or self.environ, cwd=cwd, stdin=stdin)
        argv = command_line_of(child.process.pid)
        with urllib.request.urlopen(child.url, timeout=DEADLINE) as response:
            self.assertEqual(response.read(), b"offered once\n")
        status, stderr = child.finish()
        self.assertEqual(status, 0, stderr)
        if "-i" not in python_options:
            self.assertNotIn("Traceback", stderr)
        self.assertEqual(argv[-1], offered)
        return argv

    def run_python(self, *args, env=None, **options):
        """Python run on args to its end; return (status, stdout, stderr)."""
        options.setdefault("stdout", subprocess.PIPE)
        result = subprocess.run([sys.executable] + list(args), env=env or self.environ,
                                stderr=subprocess.PIPE, timeout=DEADLINE, **options)
        return result.returncode, (result.stdout or b"").decode(), result.stderr.decode()

    def cache_files(self):
        return sorted(os.listdir(self.cache)) if os.path.isdir(self.cache) else []

    def cache_file(self):
        [name] = self.cache_files()
        return os.path.join(self.cache, name)

    def with_site_code(self, code):
        """self.environ, with code run as Python starts (a sitecustomize module)."""
        folder = os.path.join(self.tmp, "site")
        self.make_file("sitecustomize.py", code.encode(), folder=folder)
        return dict(self.environ, PYTHONPATH=folder)

    def test_woof_starts_again_in_its_own_process_with_its_options_and_caches_its_code(self):
        argv = self.offer_and_take("-W", "error", "-X", "utf8")
        start = argv.index("-c")
        self.assertEqual(argv[:start], [sys.executable, "-W", "error", "-X", "utf8"])
        self.assertEqual(argv[start + 1:start + 4], [woof.BYTECODE_LOADER_START, self.script,
                                                     os.path.dirname(self.script)])
        self.assertRegex(argv[start + 4], r"\A[0-9]+\Z")  # the cache folder's descriptor
        self.assertEqual(argv[start + 5], self.script)  # sys.argv[0], as it was given
        cached = self.cache_file()
        self.assertRegex(os.path.basename(cached), r"\Awoof-%s-O0-[0-9a-f]{32}[.]code\Z"
                         % re.escape(sys.implementation.cache_tag))
        self.assertEqual(stat.S_IMODE(os.stat(self.cache).st_mode), 0o700)
        written = os.stat(cached).st_ino
        self.assertIn("-c", self.offer_and_take())
        self.assertEqual(self.cache_file(), cached)
        self.assertEqual(os.stat(cached).st_ino, written)  # read, not written again

    def cache_content(self, code, source=None):
        """A cache file's bytes for code, as made from source (the copy's by default)."""
        import importlib.util
        body = marshal.dumps(code)
        return (b"woof" + importlib.util.MAGIC_NUMBER
                + hashlib.sha256(source or file_bytes(self.script)).digest()
                + hashlib.sha256(body).digest() + body)

    def test_the_next_start_runs_the_cached_code_and_a_changed_woof_py_its_own(self):
        version = "woof.py %s\n" % woof.__version__
        self.assertEqual(self.run_python(self.script, "--version")[:2], (0, version))
        stand_in = compile("import sys\nsys.stdout.write('from the cache\\n')\n"
                           "def main():\n    return 7\n", self.script, "exec")
        with open(self.cache_file(), "wb") as handle:
            handle.write(self.cache_content(stand_in))
        self.assertEqual(self.run_python(self.script, "--version")[:2], (7, "from the cache\n"))
        with open(self.script, "a") as handle:
            handle.write("\n# another woof.py\n")
        self.assertEqual(self.run_python(self.script, "--version")[:2], (0, version))
        self.assertNotIn(b"from the cache", file_bytes(self.cache_file()))

    def test_a_cache_file_damaged_or_not_made_for_this_python_is_made_again(self):
        version = "woof.py %s\n" % woof.__version__
        self.run_python(self.script, "--version")
        good = file_bytes(self.cache_file())
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0x20
        cases = {"empty": b"", "not a cache file": b"not marshal data",
                 "a byte changed": bytes(flipped),
                 "another Python's": good[:4] + b"\0\0\r\n" + good[8:],
                 "no code in it": self.cache_content("a string, not code")}
        for name, damaged in cases.items():
            with self.subTest(name):
                with open(self.cache_file(), "wb") as handle:
                    handle.write(damaged)
                self.assertEqual(self.run_python(self.script, "--version"), (0, version, ""))
                self.assertEqual(file_bytes(self.cache_file()), good)

    def test_without_bytecode_files_or_a_safe_cache_folder_woof_runs_as_it_was_started(self):
        def folder_others_may_write():
            os.makedirs(self.cache)
            os.chmod(self.cache, 0o777)
            return self.environ

        cases = [("PYTHONDONTWRITEBYTECODE", [], lambda: dict(self.environ,
                                                                PYTHONDONTWRITEBYTECODE="1")),
                 ("-B", ["-B"], lambda: self.environ),
                 ("group and others may write", [], folder_others_may_write),
                 ("a tracing debugger", [],
                  lambda: self.with_site_code("import sys\nsys.settrace(lambda *args: None)\n")),
                 ("a Python other than the one running", [],
                  lambda: self.with_site_code("import sys\nsys.executable = '/bin/sh'\n"))]
        if hasattr(sys, "monitoring"):
            cases.append(("a tool watching through sys.monitoring", [], lambda: self.with_site_code(
                "import sys\nsys.monitoring.use_tool_id(3, 'a test')\n")))
        for name, options, environ in cases:
            with self.subTest(name):
                shutil.rmtree(os.path.dirname(self.cache), ignore_errors=True)
                argv = self.offer_and_take(*options, env=environ())
                self.assertEqual(argv[:len(options) + 2], [sys.executable] + options + [self.script])
                self.assertEqual(self.cache_files(), [])

    def test_with_a_prompt_after_the_end_woof_runs_as_it_was_started(self):
        argv = self.offer_and_take("-i", stdin=subprocess.DEVNULL)
        self.assertEqual(argv[:3], [sys.executable, "-i", self.script])

    def test_a_program_running_woof_py_as_its_part_carries_on_after_it(self):
        def host(arguments):
            return ("import runpy, sys\n"
                    "sys.argv = %s\n"
                    "try:\n"
                    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
                    "except SystemExit as end:\n"
                    "    print('woof ended with', end.code)\n" % arguments)

        host_script = self.make_file("host.py", host("[%r] + sys.argv[1:]" % self.script).encode())
        expected = (0, "woof.py %s\nwoof ended with 0\n" % woof.__version__, "")
        for name, args in (("a script", [host_script, "--version"]),
                           ("a program given with -c", ["-c" + host("sys.argv[1:]"), self.script,
                                                        "--version"])):
            with self.subTest(name):
                self.assertEqual(self.run_python(*args), expected)
                self.assertEqual(self.cache_files(), [])

    def test_modules_beside_a_link_to_woof_py_or_in_the_current_folder_are_not_run(self):
        current = os.path.join(self.tmp, "current")
        planted = os.path.join(self.tmp, "planted")
        link = os.path.join(self.tmp, "bin", "woof.py")
        for folder in (current, os.path.dirname(link)):
            for module in ("argparse", "configparser", "tarfile"):
                self.make_file(module + ".py", ("open(%r, 'w').close()\n" % planted).encode(),
                               folder=folder)
        os.symlink(self.script, link)
        argv = self.offer_and_take(cwd=current, script=link)
        self.assertEqual(argv[argv.index("-c") + 3], os.path.dirname(self.script))
        self.assertFalse(os.path.exists(planted))

    def test_copies_of_woof_py_keep_a_cache_file_each(self):
        other = self.make_file(os.path.join("other", "woof.py"), file_bytes(self.script))
        self.run_python(self.script, "--version")
        mine = self.cache_file()
        written = os.stat(mine).st_ino
        self.run_python(other, "--version")
        self.run_python(self.script, "--version")
        self.assertEqual(len(self.cache_files()), 2)
        self.assertEqual(os.stat(mine).st_ino, written)

    def test_cache_files_unused_for_30_days_and_parts_left_for_a_day_are_deleted(self):
        days = 86400
        now = time.time()
        files = {"woof-cpython-0-O0-unused.code": 31 * days, "woof-cpython-0-O0-used.code": 29 * days,
                 "woof-cpython-0-O0-x.code.1.2.tmp": 2 * days, "woof-cpython-0-O0-y.code.3.4.tmp": 600,
                 "someone else's.code": 400 * days}
        for name, age in files.items():
            self.make_file(name, b"x", folder=self.cache)
            os.utime(os.path.join(self.cache, name), (now - age, now - age))
        self.run_python(self.script, "--version")
        left = set(self.cache_files())
        self.assertEqual(len(left - set(files)), 1)  # this woof.py's
        self.assertEqual(left & set(files), {"woof-cpython-0-O0-used.code",
                                             "woof-cpython-0-O0-y.code.3.4.tmp",
                                             "someone else's.code"})

    def test_a_relative_cache_home_is_not_taken_from_the_current_folder(self):
        current, home = os.path.join(self.tmp, "current"), os.path.join(self.tmp, "home")
        os.makedirs(current)
        os.makedirs(home)
        environ = dict(self.environ, XDG_CACHE_HOME="cache", HOME=home)
        self.assertEqual(self.run_python(self.script, "--version", env=environ, cwd=current)[0], 0)
        self.assertEqual(os.listdir(current), [])
        self.assertEqual(len(os.listdir(os.path.join(home, ".cache", "woof"))), 1)

    def test_ctrl_c_while_the_new_python_loads_woof_is_one_line(self):
        environ = self.with_site_code(
            "import os, sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'argparse':\n"
            "            raise KeyboardInterrupt\n"
            "if %r in os.environ:  # the new Python, loading woof\n"
            "    sys.meta_path.insert(0, Interrupt())\n" % woof.BYTECODE_LOADER_VARIABLE)
        self.assertEqual(self.run_python(self.script, "--version", env=environ),
                         (130, "", "woof: interrupted\n"))

    def test_closed_output_streams_end_woof_as_before(self):
        def close_output():
            os.close(1)

        self.assertEqual(self.run_python(self.script, "--version", stdout=None,
                                         preexec_fn=close_output)[0], 0)
        self.assertEqual(len(self.cache_files()), 1)

    @unittest.skipUnless(hasattr(os, "fork"), "resource limits are POSIX")
    def test_a_cache_file_that_cannot_be_written_whole_is_left_out(self):
        def limited():
            import resource
            import signal
            default_signals()
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))

        status, _, stderr = self.run_python(self.script, "--version", preexec_fn=limited)
        self.assertEqual((status, stderr), (0, ""))
        self.assertEqual(self.cache_files(), [])  # nor the part written under another name

    def test_a_woof_py_gone_before_the_new_python_reads_it_is_one_line_of_error(self):
        gone = os.path.join(self.tmp, "gone", "woof.py")
        descriptor = os.open(self.tmp, os.O_RDONLY)
        self.addCleanup(os.close, descriptor)
        status, _, stderr = self.run_python("-c", woof.BYTECODE_LOADER_CODE, gone, self.tmp,
                                            str(descriptor), "woof.py", "--version",
                                            pass_fds=[descriptor])
        self.assertEqual(status, 1)
        self.assertRegex(stderr, r"\Awoof: error: cannot read .*gone/woof.py: "
                                 r"No such file or directory\n\Z")


# ---------------------------------------------------------------------------
# The suite itself, run as CI and people run it
# ---------------------------------------------------------------------------

def ignore_stop_signals():
    """Run in a child before it starts: SIGINT and SIGHUP ignored, as for a
    job started in the background by a script, or under nohup."""
    import signal
    for name in ("SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)


class SuiteRunTests(unittest.TestCase):

    def run_suite_child(self, names, **options):
        """This file run on names in a subprocess; return its stdout's lines."""
        result = subprocess.run([sys.executable, "-W", "error", os.path.abspath(__file__)]
                                + names, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=DEADLINE * 4, **options)
        return result.stdout.decode("utf-8").splitlines(), result.stderr.decode("utf-8")

    @unittest.skipIf(os.name == "nt", "no SIGHUP on Windows")
    def test_signal_tests_pass_with_the_stop_signals_ignored_as_under_nohup(self):
        lines, stderr = self.run_suite_child(
            ["CommandLineTests.test_ctrl_c_exits_130_with_one_line",
             "UploadCommandLineTest.test_sigterm_and_sighup_remove_uploads_in_progress_"
             "and_exit_128_plus_the_signal"], preexec_fn=ignore_stop_signals)
        self.assertEqual(lines[-1:], ["2 passed, 0 failed"], stderr)

    def test_the_readme_names_every_platform_switch(self):
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as readme:
            text = readme.read()
        for name in PLATFORM_SWITCHES:
            self.assertTrue("`%s`" % name in text, "README.md does not name %s" % name)

    def test_the_reasons_for_skips_come_before_the_closing_line(self):
        environment = dict(os.environ, PATH=os.path.join(HERE, "no such folder"))
        environment.pop("WOOF_TEST_STRICT", None)
        lines, stderr = self.run_suite_child(
            ["ChecksumTests.test_a_name_with_a_backslash_is_escaped_as_sha256sum_reads_it",
             "ChecksumTests.test_the_offered_file_gets_a_line_for_sha256sum_c_after_the_url",
             "UploadCommandLineTest.test_woof_receives_with_curl_and_exits"],
            env=environment)
        self.assertEqual(lines, ["2 skipped: sha256sum is not installed",
                                 "1 skipped: curl is not installed",
                                 "0 passed, 0 failed, 3 skipped"], stderr)


# ---------------------------------------------------------------------------
# Running the suite: the last line is "N passed, N failed".
# ---------------------------------------------------------------------------

class CountingResult(unittest.TextTestResult):
    """Counts tests by outcome, whatever this Python's testsRun makes of skips."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    def failed_tests(self):
        """Tests with a failure or error, a test with failing subtests counting once."""
        broken = self.failures + self.errors + [(test, "") for test in self.unexpectedSuccesses]
        return {getattr(test, "test_case", test).id() for test, _ in broken}


# The code paths of other systems, run here: each switch sets woof's
# compatibility section as that system has it.  CI runs the download,
# folder and upload tests once under each (python3 test_woof.py --platform
# NAME TestClass...).
PLATFORM_SWITCHES = {
    "no-sendfile": {"HAS_OS_SENDFILE": False},                    # Windows
    "path-walk": {"WALK_BY_DESCRIPTOR": False},                   # Windows
    "no-tcp-queue": {"TCP_QUEUE_QUERY": False},                   # macOS, Windows
    "windows-names": {"WINDOWS_FILE_NAMES": True},                # Windows
    "no-ipv6": {"ipv6_dual_stack_available": lambda: False},      # IPv4-only machines
    "one-core": {"USABLE_CORES": 1},                              # no compression threads
    "no-read-ahead": {"READ_AHEAD": False},                       # macOS, Windows
}
PLATFORM_TESTS = ["DownloadTests", "HostileRequestTests", "StreamTests", "ArchiveFormatTests",
                  "ArchiveOfferTests", "ParallelCompressionTests", "SwappedPathTests",
                  "ResumableTarTests", "UploadServerTest", "SavingTest", "HttpsTests",
                  "ResumableUploadTests", "ResumingClientTest"]


def switch_platform(argv):
    """Apply --platform NAME from argv to woof; return argv without it."""
    if "--platform" not in argv:
        return argv
    index = argv.index("--platform")
    name = argv[index + 1] if index + 1 < len(argv) else None
    if name not in PLATFORM_SWITCHES:
        raise SystemExit("--platform takes one of: %s" % ", ".join(sorted(PLATFORM_SWITCHES)))
    for attribute, value in PLATFORM_SWITCHES[name].items():
        if not hasattr(woof, attribute):
            raise SystemExit("woof.py has no %s to switch" % attribute)
        setattr(woof, attribute, value)
    print("platform switch: %s" % name, file=sys.stderr)
    return argv[:index] + argv[index + 2:]


def run_suite(argv):
    if "--list-platforms" in argv:
        print("\n".join(sorted(PLATFORM_SWITCHES)))
        return 0
    switched = "--platform" in argv
    argv = switch_platform(argv)
    verbosity = 2 if "-v" in argv else 1
    names = [arg for arg in argv if not arg.startswith("-")]
    if switched and not names:
        names = PLATFORM_TESTS
    loader = unittest.defaultTestLoader
    module = sys.modules[__name__]
    suite = loader.loadTestsFromNames(names, module) if names else loader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(verbosity=verbosity, stream=sys.stderr,
                                     resultclass=CountingResult)
    result = runner.run(suite)
    failed = len(result.failed_tests())
    skipped = len(result.skipped)
    sys.stderr.flush()
    reasons = collections.Counter(reason for _, reason in result.skipped)
    for reason, times in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        print("%d skipped: %s" % (times, reason))
    line = "%d passed, %d failed" % (result.passed, failed)
    print(line + (", %d skipped" % skipped if skipped else ""), flush=True)
    return 0 if failed == 0 and result.passed > 0 else 1


def run_suite_as_users_start_woof(argv):
    """The suite, its woof.py subprocesses started as on a user's machine:
    with bytecode files allowed, so that they start again from woof's
    bytecode cache (Start-up in woof.py), kept in a folder of this run's own,
    as are the .pyc files of the subprocesses that import woof."""
    cache = tempfile.mkdtemp(prefix="woof-suite-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    if woof.SCRIPT_PARSE_TREE_KEPT:
        os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(cache, "pycache")
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        return run_suite(argv)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_suite_as_users_start_woof(sys.argv[1:]))
