#!/usr/bin/env python3
"""Tests for woof.py: real servers on 127.0.0.1 port 0, real sockets, real clients.

    python3 test_woof.py [-v] [TestClass[.test_name] ...]

Set WOOF_TEST_STRICT=1 to fail, rather than skip, when curl, wget, aria2c or
another client the tests use is missing.
"""

import bz2
import contextlib
import gzip
import http.client
import io
import lzma
import os
import queue
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
import zipfile

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


class ArchiveTestCase(WoofTestCase):
    """Builds a tree with everything that can go wrong, and reads archives back."""

    def make_tree(self):
        """A folder with odd names, an empty folder, links in and out, and a FIFO."""
        root = os.path.join(self.tmp, "Projet été")
        self.make_file("secret.txt", b"SECRET-OUTSIDE")
        self.make_file("a.txt", b"first file\n", root)
        self.make_file(os.path.join("sub", "100% #1?.txt"), b"odd name\n", root)
        self.make_file(os.path.join("sub", "deeper", "big.bin"), os.urandom(200000), root)
        self.make_file(os.path.join("sub", "photo.jpg"), b"\xff\xd8" + os.urandom(3000), root)
        self.make_file("zero", b"", root)
        os.makedirs(os.path.join(root, "empty"))
        os.chmod(os.path.join(root, "a.txt"), 0o751)
        os.utime(os.path.join(root, "a.txt"), (OLD_MTIME, OLD_MTIME))
        if hasattr(os, "symlink"):
            os.symlink(os.path.join(self.tmp, "secret.txt"), os.path.join(root, "out"))
            os.symlink(os.path.join(root, "a.txt"), os.path.join(root, "sub", "in"))
        if hasattr(os, "mkfifo"):
            os.mkfifo(os.path.join(root, "pipe"))
        return root

    def expected_tree(self, root, compression):
        top = os.path.basename(root)
        expected = {top: "dir", top + "/empty": "dir", top + "/sub": "dir",
                    top + "/sub/deeper": "dir"}
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                member = top + "/" + os.path.relpath(path, root).replace(os.sep, "/")
                with open(path, "rb") as handle:
                    expected[member] = handle.read()
        if compression != "zip" and hasattr(os, "symlink"):
            expected[top + "/sub/in"] = ("link", "../a.txt")
        return expected

    def offer(self, paths, compression, **options):
        log = woof.Log(stream=self.log_stream)
        return woof.ArchiveOffer(paths, compression, log, **options)

    def download(self, run, headers=None):
        response, data = self.request(run, headers=headers)
        self.assertEqual(response.status, 200, data[:200])
        return response, data

    def body_bytes(self, body, start=0, stop=None):
        """Write a body through a real ResponseSink and socket; return the bytes."""
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
            sink = woof.ResponseSink(sending)
            body.write(sink, start, body.size if stop is None else stop)
            sink.finish()
        reader.join(DEADLINE)
        return b"".join(received)


class ArchiveFormatTests(ArchiveTestCase):

    def test_every_format_round_trips_a_tree_and_leaks_nothing_outside(self):
        root = self.make_tree()
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
        root = self.make_tree()
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
        root = self.make_tree()
        run = self.start(self.offer([root], "gz"))
        _, data = self.download(run)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            info = archive.getmember("Projet été/a.txt")
            self.assertEqual((info.mode, info.mtime), (0o751, OLD_MTIME))
            self.assertEqual(archive.getmember("Projet été/empty").type, tarfile.DIRTYPE)

    def test_zip_flags_utf8_names_and_stores_compressed_media(self):
        root = self.make_tree()
        run = self.start(self.offer([root], "zip"))
        _, data = self.download(run)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            photo = archive.getinfo("Projet été/sub/photo.jpg")
            text = archive.getinfo("Projet été/a.txt")
            self.assertEqual(photo.compress_type, zipfile.ZIP_STORED)
            self.assertEqual(text.compress_type, zipfile.ZIP_DEFLATED)
            self.assertTrue(text.flag_bits & 0x800)
            self.assertEqual(text.external_attr >> 16 & 0o777, 0o751)

    def test_real_tools_open_the_archives(self):
        root = self.make_tree()
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
                self.assertIn("100% #1?.txt", result.stdout.decode("utf-8", "replace"))

    def test_links_out_and_fifos_are_left_out_and_logged(self):
        root = self.make_tree()
        if not hasattr(os, "symlink") or not hasattr(os, "mkfifo"):
            self.skipTest("needs symbolic links and FIFOs")
        self.offer([root], "tar")
        self.assertIn("left out Projet été/out: the link leads outside", self.log_text())
        self.assertIn("left out Projet été/pipe: not a regular file", self.log_text())

    def test_zip_forced_to_zip64_opens_with_zipfile_and_unzip(self):
        root = self.make_tree()
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
        root = self.make_tree()
        parser = woof.build_parser()
        log = woof.Log(stream=self.log_stream)
        offer = woof.build_offer(parser.parse_args([root]), None, "gz", log)
        self.assertEqual(offer.name, "Projet été.tar.gz")
        offer = woof.build_offer(parser.parse_args([os.path.join(root, "a.txt")]), None, "zip")
        self.assertIsInstance(offer, woof.FileOffer)
        with self.assertRaisesRegex(woof.WoofError, "only be offered alone"):
            woof.build_offer(parser.parse_args([root, "-"]), None, "gz", log)

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
        os.remove(replaced)
        if hasattr(os, "symlink"):
            os.symlink(os.path.join(self.tmp, "elsewhere"), replaced)
        else:
            self.make_file("b.txt", b"SECRET-OUTSIDE", root)
        data = self.body_bytes(body)
        self.assertEqual(len(data), body.size)
        members = read_archive(data, "tar")
        self.assertEqual(members["tree/a.bin"], b"x" * 1000 + bytes(99000))
        self.assertEqual(members["tree/b.txt"], bytes(8))
        self.assertEqual(members["tree/c.txt"], b"last")
        self.assertNotIn(b"SECRET-OUTSIDE", data)
        self.assertIn("a.bin ended early", self.log_text())

    def test_aborted_archive_download_is_not_counted_and_woof_serves_on(self):
        root = os.path.join(self.tmp, "tree")
        self.make_file("random.bin", os.urandom(8 << 20), root)
        run = self.start(self.offer([root], "gz"))
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=DEADLINE) as raw:
            raw.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % run.server.offer_path.encode())
            raw.recv(4096)
        wait_until(lambda: "aborted" in self.log_text(), message="the abort to be logged")
        self.assertFalse(run.done())
        _, data = self.download(run)
        self.assertEqual(len(read_archive(data, "gz")["tree/random.bin"]), 8 << 20)
        wait_until(run.done, message="woof to finish")
        self.assertIsNone(run.error)


@unittest.skipUnless(hasattr(os, "seteuid"), "needs POSIX user ids")
class UnreadableArchiveTests(ArchiveTestCase):
    """Permissions do not stop root: as root, woof runs as nobody for these tests."""

    def run_as_unprivileged(self):
        if os.geteuid() != 0:
            return
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

    def make_partial(self, run, path, count):
        response, data = self.request(run, headers={"Range": "bytes=0-%d" % (count - 1)})
        self.assertEqual(response.status, 206)
        with open(path, "wb") as handle:
            handle.write(data)
        return response

    def test_plain_tar_has_an_exact_size_and_serves_any_span(self):
        root = self.make_tree()
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
        root = self.make_tree()
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
        curl = require_tool("curl")
        root = self.make_tree()
        run = self.start(self.offer([root], "tar"), count=2)
        path = os.path.join(self.tmp, "partial.tar")
        self.make_partial(run, path, 3000)
        with open(os.path.join(root, "a.txt"), "ab") as handle:
            handle.write(b"changed\n")
        result = subprocess.run([curl, "-sS", "-C", "-", "-o", path, self.url(run)],
                                stderr=subprocess.PIPE)
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(os.path.getsize(path), 3000)
        wait_until(lambda: '" 409 ' in self.log_text(), message="the refusal to be logged")
        _, data = self.download(run)
        self.assertEqual(read_archive(data, "tar")["Projet été/a.txt"], b"first file\nchanged\n")


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
