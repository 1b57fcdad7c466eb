#!/bin/sh
# Fails if libferry.so exports any symbol that is not ferry_*.
# usage: check_exports.sh LIBFERRY NM
set -eu
lib=$1
nm=${2:-nm}
bad=$("$nm" -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^ferry_' || true)
if [ -n "$bad" ]; then
    echo "libferry exports symbols outside ferry_*:" >&2
    echo "$bad" >&2
    exit 1
fi
count=$("$nm" -D --defined-only "$lib" | grep -c ' ferry_')
echo "libferry exports $count ferry_* symbols and nothing else"
[ "$count" -gt 20 ]
