#!/usr/bin/env bash
# bench/wide.sh [OUT_DIR] — makes "wide", a model with Mixtral 8x7B's matrix shapes and 2
# layers, and its quantized files (bench/model.sh wide). Prints the paths.
exec "$(dirname "$0")/model.sh" wide "$@"
