#!/usr/bin/env python3
"""NVIDIA machine code (SASS) of Vulkan pipelines, from pipeline-cache dumps.

ra-bench with RA_VK_PIPELINE_CACHE_DUMP=<dir> writes one vkGetPipelineCacheData
blob per pipeline (<kernel>-<spec>.pcache). NVIDIA's format is not
documented; what this script relies on was read off the H100's driver
(580.159.04) blobs (docs/vulkan.md, "Reading the driver's code"):

- a 32-byte Vulkan cache header (vendor 0x10de), NVIDIA's own header, then a
  zstd frame (magic 28 b5 2f fd);
- decompressed, an object starting "NVDANVVMNVuc" whose 32-bit words at
  byte 0x48 are (1, code bytes, offset): code bytes equal the pipeline
  statistics' "Binary Size", and the code is raw SASS (128-bit
  instructions, which `nvdisasm --binary SM90` reads) from offset + 8 (the
  8 bytes at the offset are zero; starting there, the second instruction
  is illegal).

For each blob: decompress (python zstandard, else the zstd program), carve
the code to <out>/<blob>.code, disassemble it when nvdisasm is there (the GPU
machine's CUDA toolkit has it; this machine's has not) into <blob>.sass, and
print the instruction mix (HMMA, LDSM, LDS, STS, LDG, BAR, local memory
LDL/STL, ...). Where a blob does not have that layout (another driver, or
lavapipe's header-only blobs) it says so and goes on. Exit status 2 for a
dump folder that does not exist, 1 for one with no .pcache blobs.

usage: nv_pipeline_sass.py <dump dir> [<out dir>] [--arch SM90]
"""
import collections
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib


def tool(name):
    return shutil.which(name) or (os.path.exists(f"/usr/local/cuda/bin/{name}") and f"/usr/local/cuda/bin/{name}")


def zstd_frame(blob):
    """The decompressed zstd frame inside blob, or None with a line on stderr."""
    i = blob.find(b"\x28\xb5\x2f\xfd")
    if i < 0:
        return None
    try:
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob[i:])
    except ImportError:
        pass
    exe = shutil.which("zstd")
    if not exe:
        sys.stderr.write("no python zstandard and no zstd program: cannot decompress\n")
        return None
    r = subprocess.run([exe, "-d", "-c", "-q"], input=blob[i:], capture_output=True)
    if r.returncode != 0:
        sys.stderr.write(f"zstd: rc {r.returncode}: {r.stderr.decode()[:200]}\n")
        return None
    return r.stdout


def nvuc_code(obj):
    """(offset, bytes) of the SASS in an NVuc object, or None."""
    if not obj.startswith(b"NVDANVVMNVuc") or len(obj) < 0x54:
        return None
    kind, size, off = struct.unpack_from("<3I", obj, 0x48)
    off += 8
    if kind != 1 or size == 0 or size % 16 or off + size > len(obj):
        return None
    return off, obj[off:off + size]


def disassemble_code(path, arch):
    exe = tool("nvdisasm")
    if not exe:
        return ""
    r = subprocess.run([exe, "--binary", arch, "-c", path], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"nvdisasm {path}: rc {r.returncode}: {r.stderr.strip()[:300]}\n")
        return ""
    return r.stdout


MIX = ["HMMA", "MOVM", "WARPSYNC", "LDSM", "LDS", "STS", "LDG", "STG", "LDL", "STL", "BAR", "SHFL", "MUFU", "FFMA", "FMUL",
       "FADD", "FMNMX", "F2FP", "HADD2", "HFMA2", "BRA", "ISETP", "IMAD", "LEA", "IADD3", "LOP3", "SEL",
       "FSEL", "FSETP", "MOV", "S2R", "DEPBAR", "LDGSTS"]


def mix(sass):
    ops = collections.Counter()
    for line in sass.splitlines():
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(\.[A-Z0-9_.]+)?", line)
        if m:
            ops[m.group(1)] += 1
    total = sum(ops.values())
    shown = ", ".join(f"{k} {ops[k]}" for k in MIX if ops[k])
    return f"{total} instructions: {shown}"


def main():
    args = sys.argv[1:]
    arch = "SM90"
    if "--arch" in args:
        k = args.index("--arch")
        arch = args[k + 1]
        del args[k:k + 2]
    if not args:
        sys.exit(__doc__)
    src = args[0]
    dst = args[1] if len(args) > 1 else src
    if not os.path.isdir(src):
        print(f"nv_pipeline_sass: no dump folder {src} (ra-bench with RA_VK_PIPELINE_CACHE_DUMP=<folder> "
              "fills one)", file=sys.stderr)
        sys.exit(2)
    names = sorted(n for n in os.listdir(src) if n.endswith(".pcache"))
    if not names:
        print(f"nv_pipeline_sass: no .pcache blobs in {src}", file=sys.stderr)
        sys.exit(1)
    os.makedirs(dst, exist_ok=True)
    for name in names:
        blob = open(os.path.join(src, name), "rb").read()
        words = struct.unpack_from("<8I", blob, 0) if len(blob) >= 32 else ()
        ratio = len(zlib.compress(blob, 6)) / max(1, len(blob))
        print(f"{name}: {len(blob)} bytes, zlib ratio {ratio:.2f}, header {[hex(w) for w in words]}")
        obj = zstd_frame(blob)
        code = nvuc_code(obj) if obj else None
        if code:
            base = os.path.join(dst, name[:-len(".pcache")])
            open(base + ".code", "wb").write(code[1])
            sass = disassemble_code(base + ".code", arch)
            if sass:
                open(base + ".sass", "w").write(sass)
            print(f"  code: {len(code[1])} bytes at {code[0]} of a {len(obj)}-byte object: "
                  f"{mix(sass) if sass else 'not disassembled (no nvdisasm)'}")
        elif obj:
            print(f"  decompressed {len(obj)} bytes, starting {obj[:12]!r}: no code found")
        else:
            print("  no zstd frame: no code found")


if __name__ == "__main__":
    main()
