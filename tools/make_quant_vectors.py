#!/usr/bin/env python3
"""Generate dequantization test vectors for Tests/KernelsTests with llama.cpp's `gguf` package.

For every quant type specdec supports, writes Tests/KernelsTests/Fixtures/<TYPE>.bin:

    offset  size  field
    0       4     magic b"QVEC"
    4       4     u32 ggml type id (GGMLQuantizationType)
    8       4     u32 element count (rows * cols)
    12      4     u32 raw byte count
    16      4     u32 row count (rows of equal length; cols = count / rows)
    20      raw   packed block bytes, exactly as stored in a GGUF tensor
    ...     4*n   f32 expected values from gguf.quants.dequantize (little-endian)

The raw bytes are random, except that fp16 scale fields (d, dmin) are set to finite values
of random sign with magnitude in [0.001, 0.1], so every block is a valid block.
For F32/F16/BF16, row 0 starts with special values (±0, subnormals, ±inf, NaN, extremes)
followed by random bit patterns; row 1 holds only finite values (for dot-product checks).

Usage: python3 tools/make_quant_vectors.py [output-dir]   (deterministic: fixed seed)
"""
import os
import struct
import sys

import numpy as np
import gguf
from gguf.quants import dequantize
from gguf import GGMLQuantizationType as T

ROWS = 2
COLS = 512          # two K-quant super-blocks, 16 Q4/Q8 blocks per row
rng = np.random.default_rng(20240611)


def rand_scales(n):
    mag = rng.uniform(0.001, 0.1, size=n).astype(np.float32)
    sign = np.where(rng.integers(0, 2, size=n) == 1, -1.0, 1.0).astype(np.float32)
    return (mag * sign).astype(np.float16).view(np.uint8).reshape(n, 2)


def quant_blocks(qtype, nblocks, type_size, scale_offsets):
    blocks = rng.integers(0, 256, size=(nblocks, type_size), dtype=np.uint8)
    for off in scale_offsets:
        blocks[:, off:off + 2] = rand_scales(nblocks)
    return blocks.reshape(-1)


def f32_data():
    specials = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan,
                         1.4e-45, -1.4e-45, 1.17549435e-38, 1.1754942e-38, -5.9e-39,
                         3.4028235e38, -3.4028235e38, 65504.0, 6.1e-5, 5.96e-8], dtype=np.float32)
    row0 = np.concatenate([specials,
                           rng.integers(0, 2**32, size=COLS - len(specials), dtype=np.uint32).view(np.float32)])
    row1 = (rng.standard_normal(COLS) * np.exp(rng.uniform(-8, 8, COLS))).astype(np.float32)
    return np.concatenate([row0, row1]).astype(np.float32).view(np.uint8)


def f16_data():
    specials = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x83ff, 0x0400, 0x7bff, 0xfbff,
                         0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7c01, 0x3c00, 0xbc00, 0x3555], dtype=np.uint16)
    row0 = np.concatenate([specials, rng.integers(0, 2**16, size=COLS - len(specials), dtype=np.uint16)])
    row1 = rng.integers(0, 2**16, size=COLS, dtype=np.uint16)
    row1 = np.where((row1 & 0x7c00) == 0x7c00, row1 & 0xbfff, row1).astype(np.uint16)  # no inf/NaN
    return np.concatenate([row0, row1]).astype(np.uint16).view(np.uint8)


def bf16_data():
    specials = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f,
                         0x7f80, 0xff80, 0x7fc0, 0xffc0, 0x7f81, 0x3f80, 0xbf80, 0x3eab], dtype=np.uint16)
    row0 = np.concatenate([specials, rng.integers(0, 2**16, size=COLS - len(specials), dtype=np.uint16)])
    # finite row with moderate magnitudes: exponent field restricted to [64, 190]
    sign = rng.integers(0, 2, size=COLS, dtype=np.uint16) << 15
    exp = rng.integers(64, 191, size=COLS, dtype=np.uint16) << 7
    mant = rng.integers(0, 128, size=COLS, dtype=np.uint16)
    row1 = sign | exp | mant
    return np.concatenate([row0, row1]).astype(np.uint16).view(np.uint8)


# (name, qtype, block elements, block bytes, fp16 scale offsets within a block)
QUANTS = [
    ("Q4_0", T.Q4_0, 32, 18, [0]),
    ("Q4_1", T.Q4_1, 32, 20, [0, 2]),
    ("Q8_0", T.Q8_0, 32, 34, [0]),
    ("Q4_K", T.Q4_K, 256, 144, [0, 2]),
    ("Q5_K", T.Q5_K, 256, 176, [0, 2]),
    ("Q6_K", T.Q6_K, 256, 210, [208]),
]


def write(outdir, name, qtype, raw):
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    count = ROWS * COLS
    with np.errstate(all="ignore"):
        expected = np.asarray(dequantize(raw, qtype), dtype=np.float32).reshape(-1)
    assert expected.size == count, (name, expected.size)
    header = b"QVEC" + struct.pack("<IIII", int(qtype), count, raw.size, ROWS)
    path = os.path.join(outdir, f"{name}.bin")
    with open(path, "wb") as f:
        f.write(header)
        f.write(raw.tobytes())
        f.write(expected.astype("<f4").tobytes())
    print(f"{path}: {count} elements, {raw.size} raw bytes")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "Tests", "KernelsTests", "Fixtures")
    os.makedirs(outdir, exist_ok=True)
    write(outdir, "F32", T.F32, f32_data())
    write(outdir, "F16", T.F16, f16_data())
    write(outdir, "BF16", T.BF16, bf16_data())
    for name, qtype, bs, ts, offs in QUANTS:
        assert gguf.GGML_QUANT_SIZES[qtype] == (bs, ts), name
        nblocks = ROWS * COLS // bs
        write(outdir, name, qtype, quant_blocks(qtype, nblocks, ts, offs))


if __name__ == "__main__":
    main()
