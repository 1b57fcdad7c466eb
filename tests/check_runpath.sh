#!/bin/sh
# Fails unless libferry.so carries a RUNPATH to the CUDA runtime's directory, so that it
# loads libcudart without the loader's cache or LD_LIBRARY_PATH.
# usage: check_runpath.sh LIBFERRY CUDA_LIB_DIR READELF
set -eu
lib=$1
dir=$2
readelf=${3:-readelf}
runpath=$("$readelf" -d "$lib" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
case ":$runpath:" in
    *":$dir:"*) ;;
    *) echo "libferry's RUNPATH is '$runpath', without $dir" >&2; exit 1 ;;
esac
[ -f "$dir/libcudart.so" ] || { echo "$dir holds no libcudart.so" >&2; exit 1; }
echo "libferry's RUNPATH holds $dir, where libcudart.so is"
