#!/usr/bin/env python3
# austen.py DATA_DIR OUT_DIR — extracts Jane Austen's six novels from the Debian package
# r-cran-janeaustenr (MIT; the texts are public domain, from Project Gutenberg) and writes
# OUT_DIR/train.txt (five novels) and OUT_DIR/valid.txt (Persuasion), one paragraph a line.
#
# DATA_DIR is the package's data folder (.../janeaustenr/data). Its Rdata.rdb is R's
# lazy-load database: records of [4-byte big-endian length][zlib stream], each a serialized
# R object; the novels are character vectors (STRSXP), one element per printed line. Only
# the standard library is used, so no R installation is needed.
import re, struct, sys, zlib

def records(raw):
    pos = 0
    while pos < len(raw):
        d = zlib.decompressobj()
        data = d.decompress(raw[pos + 4:])
        pos = len(raw) - len(d.unused_data)
        yield data

def strsxp(b):
    """The strings of a serialized character vector (XDR format 'X'), or None."""
    if b[:2] != b'X\n':
        return None
    i32 = lambda p: struct.unpack('>i', b[p:p + 4])[0]
    p = 2
    ver = i32(p); p += 12                      # version, writer's R version, minimal version
    if ver == 3:
        p += 4 + i32(p)                        # native encoding name
    if i32(p) & 0xff != 16:                    # STRSXP
        return None
    n = i32(p + 4); p += 8
    out = []
    for _ in range(n):
        ln = i32(p + 4); p += 8                # CHARSXP flags, length (-1 = NA)
        out.append('' if ln < 0 else b[p:p + ln].decode('utf-8')); p += max(ln, 0)
    return out

def paragraphs(lines):
    text = '\n'.join(lines)
    out = []
    for para in re.split(r'\n\s*\n', text):
        para = ' '.join(l.strip() for l in para.split('\n') if l.strip())
        if para:
            out.append(para)
    return '\n'.join(out) + '\n'

def main():
    data_dir, out_dir = sys.argv[1], sys.argv[2]
    raw = open(data_dir + '/Rdata.rdb', 'rb').read()
    books = {}
    for rec in records(raw):
        s = strsxp(rec)
        if s:
            books[s[0].strip().upper()] = paragraphs(s)
    train = ['EMMA', 'MANSFIELD PARK', 'NORTHANGER ABBEY', 'PRIDE AND PREJUDICE', 'SENSE AND SENSIBILITY']
    missing = [t for t in train + ['PERSUASION'] if t not in books]
    if missing:
        sys.exit('austen.py: %s: novels not found: %s (found %s)' % (data_dir, missing, sorted(books)))
    with open(out_dir + '/train.txt', 'w') as f:
        f.write(''.join(books[t] for t in train))
    with open(out_dir + '/valid.txt', 'w') as f:
        f.write(books['PERSUASION'])

if __name__ == '__main__':
    main()
