#!/usr/bin/env bash
# bench/mix1b.sh [OUT_DIR] — makes the "mix-1b" benchmark model of issues 7 and 8 and its
# quantized files (bench/model.sh mix-1b). Prints the paths.
exec "$(dirname "$0")/model.sh" mix-1b "$@"
