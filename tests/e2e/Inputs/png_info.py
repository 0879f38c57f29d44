"""tests/e2e/Inputs/png_info.py FILE... -- for each PNG: `FILE: WxH gray|rgb`, and
for gray images the border's value and the number of distinct pixel values
(decoded with zlib: 8-bit, non-interlaced, as libpng and cairo write them)."""
import struct
import sys
import zlib


def decode(data):
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    bpp = {0: 1, 2: 3, 6: 4}[ctype]
    raw, rows, prev = zlib.decompress(idat), [], bytearray(w * bpp)
    stride = w * bpp
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, ctype, rows


for path in sys.argv[1:]:
    w, h, ctype, rows = decode(open(path, "rb").read())
    if ctype == 0:
        values = set(v for r in rows for v in r)
        print(f"{path}: {w}x{h} gray, border {rows[0][0]}, {len(values)} distinct pixel values")
    else:
        print(f"{path}: {w}x{h} {'rgb' if ctype == 2 else 'rgba'}")
