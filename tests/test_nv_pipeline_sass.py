#!/usr/bin/env python3
"""scripts/nv_pipeline_sass.py on synthetic pipeline-cache blobs (plain
unittest): the layout read off NVIDIA's 580.159 driver (docs/vulkan.md,
"Reading the driver's code") is built here byte by byte, zstd-compressed
with the zstd program, and the script must carve exactly the code bytes;
blobs that do not match (lavapipe's header-only blob, a wrong object
magic, a code size that is not whole instructions) are reported, not
carved; a missing or empty dump folder is an error. Disassembly needs nvdisasm (the GPU machine's CUDA toolkit), so
only the carving is checked here."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "nv_pipeline_sass.py")


def nvuc_object(code, magic=b"NVDANVVMNVuc", offset=400):
    obj = bytearray(magic + bytes(0x48 - len(magic)))
    obj += struct.pack("<3I", 1, len(code), offset)
    obj += bytes(offset - len(obj))
    obj += bytes(8) + code + bytes(64)  # the code starts 8 bytes past the offset
    return bytes(obj)


def blob(obj):
    frame = subprocess.run(["zstd", "-q", "-c"], input=obj, capture_output=True, check=True).stdout
    header = struct.pack("<4I", 32, 1, 0x10DE, 0x2330) + bytes(16)
    return header + bytes(68) + frame  # NVIDIA's own header lies between


@unittest.skipUnless(shutil.which("zstd"), "no zstd program (scripts/install-deps.sh installs it)")
class CarveTest(unittest.TestCase):
    def run_script(self, blobs):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        for name, data in blobs.items():
            with open(os.path.join(d, name + ".pcache"), "wb") as f:
                f.write(data)
        out = os.path.join(d, "out")
        r = subprocess.run([sys.executable, SCRIPT, d, out], capture_output=True, text=True,
                           env=dict(os.environ, PATH="/usr/bin:/bin"))  # no nvdisasm on PATH
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout, out

    def test_carves_the_code(self):
        code = bytes(range(256)) * 2  # 512 bytes: 32 instructions
        text, out = self.run_script({"fwd_cm_khr-128_64": blob(nvuc_object(code))})
        self.assertIn("code: 512 bytes at 408", text)
        with open(os.path.join(out, "fwd_cm_khr-128_64.code"), "rb") as f:
            self.assertEqual(f.read(), code)

    def test_reports_what_does_not_match(self):
        code = bytes(48)
        text, out = self.run_script({
            "header_only": struct.pack("<4I", 32, 1, 0x10005, 0) + bytes(16),  # lavapipe's
            "wrong_magic": blob(nvuc_object(code, magic=b"SOMETHINGELSE")),
            "partial_instruction": blob(nvuc_object(bytes(40))),
        })
        self.assertIn("header_only.pcache: 32 bytes", text)
        self.assertIn("no code found", text)
        self.assertEqual(text.count("code:"), 0)
        self.assertFalse(os.path.exists(os.path.join(out, "wrong_magic.code")))


class FolderTest(unittest.TestCase):
    def test_missing_or_empty_folder(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        missing = os.path.join(d, "missing")
        r = subprocess.run([sys.executable, SCRIPT, missing], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no dump folder", r.stderr)
        self.assertFalse(os.path.exists(missing))  # not created by the check
        r = subprocess.run([sys.executable, SCRIPT, d], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no .pcache blobs", r.stderr)


if __name__ == "__main__":
    unittest.main()
