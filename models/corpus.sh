#!/usr/bin/env bash
# models/corpus.sh [OUT_DIR] — the English corpus of the default model and of
# docs/EXPERIMENTS.md: Jane Austen's six novels from the Debian package r-cran-janeaustenr
# (package MIT, texts public domain). Downloads only that .deb (apt-get download: no R
# needed), unpacks it to a temporary folder and writes OUT_DIR/train.txt (Emma, Mansfield
# Park, Northanger Abbey, Pride and Prejudice, Sense and Sensibility; 3.5 MB) and
# OUT_DIR/valid.txt (Persuasion; 0.47 MB). OUT_DIR defaults to bench/out/austen.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out/austen}
mkdir -p "$out"
if [ -s "$out/train.txt" ] && [ -s "$out/valid.txt" ]; then echo "$out"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deb=$(ls /var/cache/apt/archives/r-cran-janeaustenr_*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
    (cd "$tmp" && apt-get download r-cran-janeaustenr >&2) || {
        echo "corpus.sh: apt-get download r-cran-janeaustenr failed (run 'apt-get update' first?)" >&2; exit 1; }
    deb=$(ls "$tmp"/r-cran-janeaustenr_*.deb)
fi
dpkg-deb -x "$deb" "$tmp/x"
/usr/bin/python3 models/austen.py "$tmp/x/usr/lib/R/site-library/janeaustenr/data" "$out"
echo "$out"
