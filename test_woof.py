#!/usr/bin/env python3
"""Tests for woof.py: real servers on 127.0.0.1 port 0, real sockets, real clients.

    python3 test_woof.py [-v] [TestClass[.test_name] ...]

Set WOOF_TEST_STRICT=1 to fail, rather than skip, when curl, wget, aria2c or
another client the tests use is missing.
"""

import contextlib
import http.client
import io
import json
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
import unittest.mock as mock
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
                 ("dir/aux/x", ["dir", "_aux", "x"])]
        for client_name, expected in table:
            with self.subTest(name=client_name):
                self.assertEqual(woof.upload_path(client_name, windows=True), expected)

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

    @unittest.skipUnless(hasattr(os, "symlink") and os.name != "nt", "needs symbolic links")
    def test_new_folders_never_go_through_an_existing_link(self):
        outside = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, outside)
        os.symlink(outside, os.path.join(self.tmp, "photos"))
        os.symlink(os.path.join(outside, "missing"), os.path.join(self.tmp, "dangling"))
        self.assertEqual(woof.make_unique_folder(self.tmp, "photos"), "photos (1)")
        self.assertEqual(woof.make_unique_folder(self.tmp, "dangling"), "dangling (1)")
        self.assertEqual(os.listdir(outside), [])


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
        found = {}
        for folder, _, names in os.walk(self.inbox):
            for name in names:
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    found[os.path.relpath(path, self.inbox).replace(os.sep, "/")] = handle.read()
        return found

    def post_form(self, run, parts, headers=None):
        values = dict(FORM_HEADERS)
        values.update(headers or {})
        return self.request(run, "POST", "/", values, form_body(parts))

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
        self.assertEqual(data.decode("utf-8").splitlines(),
                         ["saved \u00e9t\u00e9 \u65e5\u672c.txt (15 B)", "saved big.bin (3.0 MiB)",
                          "saved empty.txt (0 B)"])
        self.assertEqual(self.inbox_files(), files)
        self.assertFalse(run.done())
        self.assertIn("saved big.bin (3.0 MiB in", self.log_text())
        response, data = self.request(run, "PUT", "/last.txt", body=b"last")
        self.assert_response(response, data, 201, {"Location": "/last.txt"}, b"saved last.txt (4 B)\n")
        run.wait()
        self.assertIn("upload 2 of 2 complete", self.log_text())

    def test_browsers_get_a_page_naming_what_was_saved(self):
        run = self.receive()
        response, data = self.post_form(run, [file_part("<b>&.txt", b"x")],
                                        {"Accept": "text/html,application/xhtml+xml"})
        self.assert_response(response, data, 200, {"Content-Type": "text/html; charset=utf-8"})
        self.assertIn("&lt;b&gt;&amp;.txt <small>(1 B)</small>", data.decode("utf-8"))
        self.assertIn("finished receiving", data.decode("utf-8"))
        run.wait()
        self.assertEqual(self.inbox_files(), {"<b>&.txt": b"x"})

    def test_hostile_names_land_inside_under_safe_names(self):
        table = [(b"../../x", "x"), (b"/etc/passwd", "passwd"), (b"C:\\y", "y"), (b"..", "upload"),
                 (b"", "upload (1)"), (b"new%0Aline", "new_line"), (b"nul\x00byte", "nul_byte"),
                 (b".bashrc", "_.bashrc"), (b"\xc3\xa9" * 150 + b".txt", "\u00e9" * 125 + ".txt")]
        run = self.receive(count=len(table) + 1)
        for raw_name, saved in table:
            with self.subTest(name=raw_name[:20]):
                response, data = self.post_form(run, [file_part(raw_name, saved.encode())])
                self.assert_response(response, data, 200)
                self.assertEqual(data.decode("utf-8").rsplit(" (", 1)[0], "saved " + saved)
        self.assertEqual(self.inbox_files(), {saved: saved.encode() for _, saved in table})
        self.assertEqual(os.listdir(self.tmp), ["inbox"])
        response, data = self.request(run, "PUT", "/%2e%2e/%2e%2e/escape.txt", body=b"put")
        self.assert_response(response, data, 201, body=b"saved escape.txt (3 B)\n")
        self.assertEqual(os.listdir(self.tmp), ["inbox"])

    def test_same_names_are_numbered_and_nothing_is_overwritten(self):
        self.make_file("a.txt", b"old", self.inbox)
        run = self.receive(count=3)
        response, data = self.post_form(run, [file_part("a.txt", b"one"), file_part("a.txt", b"two")])
        self.assert_response(response, data, 200, body=b"saved a (1).txt (3 B)\nsaved a (2).txt (3 B)\n")
        response, data = self.request(run, "PUT", "/a.txt", body=b"three")
        self.assert_response(response, data, 201, {"Location": "/a%20%283%29.txt"})
        response, data = self.request(run, "PUT", "/", body=b"unnamed")
        self.assert_response(response, data, 201, body=b"saved upload (7 B)\n")
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

    @unittest.skipUnless(hasattr(os, "symlink") and os.name != "nt", "needs symbolic links")
    def test_folder_uploads_never_follow_a_link(self):
        outside = os.path.join(self.tmp, "outside")
        os.mkdir(outside)
        os.symlink(outside, os.path.join(self.inbox, "photos"))
        run = self.receive()
        response, data = self.post_form(run, [file_part("photos/a.jpg", b"a")])
        self.assert_response(response, data, 200, body=b"saved photos (1)/a.jpg (1 B)\n")
        self.assertEqual(os.listdir(outside), [])

    def test_an_interrupted_upload_leaves_nothing_and_is_not_counted(self):
        run = self.receive()
        body = form_body([file_part("cut.bin", b"x" * (8 << 20))])
        head = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                b"Content-Length: %d\r\n\r\n" % (BOUNDARY.encode(), len(body)))
        raw = self.partial_upload(run, head + body[:3 << 20], 0)
        raw.close()
        self.wait_idle(run)
        self.assertEqual(self.inbox_files(), {})
        self.assertFalse(run.done())
        self.assertIn('"POST / HTTP/1.1" 400 aborted: the body ended after 3.0 MiB of 8.0 MiB',
                      self.log_text())
        put = b"PUT /cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
        self.partial_upload(run, put, 3 << 20).close()
        self.wait_idle(run)
        self.assertEqual(self.inbox_files(), {})
        response, data = self.request(run, "PUT", "/whole.bin", body=b"whole")
        self.assert_response(response, data, 201)
        run.wait()
        self.assertEqual(self.inbox_files(), {"whole.bin": b"whole"})

    def test_a_client_that_stops_sending_times_out_and_leaves_nothing(self):
        run = self.receive(timeout=0.5)
        put = b"PUT /slow.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
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

    def test_stopping_woof_removes_uploads_in_progress(self):
        run = self.receive()
        put = b"PUT /big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
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
        self.assert_response(response, response.read(), 201, body=b"saved chunked.bin (3.0 MiB)\n")
        run.wait()
        self.assertEqual(self.inbox_files(), {"chunked.bin": data})

    def test_max_upload_is_refused_up_front_and_while_streaming(self):
        run = self.receive(max_upload=1000)
        raw = self.raw_exchange(run, b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n"
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

    def test_a_body_larger_than_the_free_space_is_refused(self):
        run = self.receive()
        raw = self.raw_exchange(run, b"PUT /huge HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
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


@unittest.skipUnless(hasattr(os, "fork"), "needs resource limits (POSIX)")
class FullDiskTest(UploadTestCase):
    # A file-size limit makes write() fail with EFBIG, as a full disk fails
    # with ENOSPC, once SIGXFSZ (which would kill woof) is ignored.  Only
    # the woof subprocess gets the limit.
    LIMITED_WOOF = ("import resource, signal, sys\n"
                    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                    "resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))\n"
                    "sys.path.insert(0, sys.argv[1])\n"
                    "import woof\n"
                    "sys.exit(woof.main(sys.argv[2:], config_paths=()))\n")

    def test_a_disk_that_fills_gives_507_and_removes_the_partial_file(self):
        child = WoofProcess(self, ["-c", self.LIMITED_WOOF, HERE,
                                   "-U", self.inbox, "-i", "127.0.0.1", "-p", "0"])
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
        connection = http.client.HTTPConnection("127.0.0.1", child.port, timeout=DEADLINE)
        self.addCleanup(connection.close)
        connection.request("PUT", "/small.txt", body=b"fits")
        response = connection.getresponse()
        self.assert_response(response, response.read(), 201)
        self.assertEqual(child.wait(), 0)
        self.assertEqual(self.inbox_files(), {"small.txt": b"fits"})


class WoofProcess:
    """woof.py (or a given Python snippet) in a subprocess, until it prints its URL."""

    def __init__(self, test, args, python=sys.executable):
        self.process = subprocess.Popen([python] + args, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, universal_newlines=True,
                                        encoding="utf-8")
        test.addCleanup(self.close)
        line = self.process.stdout.readline()
        if " on http://" not in line:
            self.process.kill()
            raise AssertionError("woof printed %r; stderr: %s" % (line, self.process.stderr.read()))
        self.url = line.split(" on ", 1)[1].strip()
        self.port = urllib.parse.urlsplit(self.url).port

    def wait(self, timeout=DEADLINE):
        return self.process.wait(timeout)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


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
        table = [(["-U", missing], 1, "is not a folder"),
                 (["-U", self.inbox, "x.txt"], 1, "give no FILE"),
                 (["-U", self.inbox, "--upload-dir", self.tmp], 1, "name two folders"),
                 (["--max-upload", "2G", "x.txt"], 1, "only applies when receiving"),
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
        child = WoofProcess(self, [WOOF_PATH, "-U", self.inbox, "-c", "4", "-i", "127.0.0.1",
                                   "-p", "0"])
        self.assertEqual(child.url, "http://127.0.0.1:%d/" % child.port)
        photo = self.make_file("ph\u00f6to.jpg", os.urandom(2 << 20))
        other = self.make_file("other.txt", b"other")
        def curl_output(*args, **kwargs):
            return subprocess.check_output([curl, "-sS", "--fail"] + list(args), **kwargs)
        self.assertEqual(curl_output("-F", "file=@" + photo, "-F", "x=@" + other, child.url),
                         "saved ph\u00f6to.jpg (2.0 MiB)\nsaved other.txt (5 B)\n".encode("utf-8"))
        self.assertEqual(curl_output("-F", "upfile=@" + other, child.url),
                         b"saved other (1).txt (5 B)\n")
        answer = curl_output("-i", "-T", photo, child.url).decode("utf-8")
        self.assertIn("HTTP/1.1 201 Created", answer)
        self.assertIn("Location: /ph%C3%B6to%20%281%29.jpg", answer)
        with open(photo, "rb") as source:
            self.assertEqual(curl_output("-T", "-", child.url + "piped.bin", stdin=source),
                             b"saved piped.bin (2.0 MiB)\n")
        self.assertEqual(child.wait(), 0)
        with open(photo, "rb") as source:
            data = source.read()
        self.assertEqual(self.inbox_files(), {"ph\u00f6to.jpg": data, "other.txt": b"other",
                                              "other (1).txt": b"other",
                                              "ph\u00f6to (1).jpg": data, "piped.bin": data})
        log = child.process.stderr.read()
        self.assertIn("127.0.0.1 saved piped.bin (2.0 MiB in", log)
        self.assertIn("upload 4 of 4 complete", log)


# Run by WOOF_BROWSER_PYTHON (a Python with Playwright): uploads two files
# with the page's script, one without JavaScript, then downloads one file.
BROWSER_SCRIPT = r"""
import json, re, sys
from playwright.sync_api import sync_playwright
upload_url, download_url, first, second, third = sys.argv[1:6]
flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
result = {}
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
    try:
        page = browser.new_page()
        page.goto(upload_url)
        page.set_input_files("#files", [first, second])
        page.click("#send")
        # A locator waits without eval(), which the page's CSP forbids.
        page.locator("#status", has_text=re.compile("^(Saved|Not saved)")).wait_for()
        result["status"] = page.text_content("#status")
        result["progress"] = page.eval_on_selector_all("progress", "bars => bars.map(b => b.value / b.max)")
        plain = browser.new_context(java_script_enabled=False).new_page()
        plain.goto(upload_url)
        plain.set_input_files("#files", [third])
        with plain.expect_navigation():
            plain.click("#send")
        result["plain"] = plain.text_content("body")
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
            if STRICT:
                raise AssertionError(missing + " (WOOF_TEST_STRICT=1)")
            raise unittest.SkipTest(missing)
        return python

    def test_chromium_uploads_with_and_without_javascript_and_downloads(self):
        python = self.browser_python()
        first = self.make_file("f\u00fcrst \u65e5.txt", os.urandom(300000))
        second = self.make_file("second.bin", os.urandom(70000))
        third = self.make_file("third.txt", b"sent without javascript")
        offered = self.make_file("\u00dcn\u00efc\u00f8d\u00e9 \u65e5\u672c.txt", b"downloaded\n")
        receiver = WoofProcess(self, [WOOF_PATH, "-U", self.inbox, "-c", "2", "-i", "127.0.0.1",
                                      "-p", "0"])
        sender = WoofProcess(self, [WOOF_PATH, "-c", "1", "-i", "127.0.0.1", "-p", "0", offered])
        output = subprocess.run([python, "-c", BROWSER_SCRIPT, receiver.url, sender.url,
                                 first, second, third], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=120, universal_newlines=True)
        self.assertEqual(output.returncode, 0, output.stderr[-3000:])
        result = json.loads(output.stdout.strip().splitlines()[-1])
        self.assertEqual(result["status"].splitlines(),
                         ["Saved:", "f\u00fcrst \u65e5.txt (293.0 KiB)", "second.bin (68.4 KiB)"])
        self.assertEqual(result["progress"], [1, 1])
        self.assertIn("third.txt (23 B)", result["plain"])
        self.assertEqual(receiver.wait(), 0)
        expected = {}
        for path in (first, second, third):
            with open(path, "rb") as handle:
                expected[os.path.basename(path)] = handle.read()
        self.assertEqual(self.inbox_files(), expected)
        self.assertEqual(result["download_name"], os.path.basename(offered))
        self.assertEqual(bytes.fromhex(result["download_hex"]), b"downloaded\n")
        self.assertEqual(sender.wait(), 0)


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
