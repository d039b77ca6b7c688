#!/bin/sh
# `pip-install-lock.sh PYTHON LOCK`: install a lock with its hashes (what every make target installs). Its
# llama-cpp-python ships as source only: where neither the environment nor pip's cache holds a wheel of the locked
# version, pip builds llama.cpp for this CPU (a few minutes on 2 cores, with a C++ compiler and cmake), once; say so,
# and show that it is still at work, since pip -q prints nothing while it builds.
set -e
python="$1"
lock="$2"
version=$(sed -n 's/^llama-cpp-python==\([^ ;]*\).*/\1/p' "$lock")
installed=$("$python" -m pip show llama-cpp-python 2>/dev/null | sed -n 's/^Version: //p')
if [ -n "$version" ] && [ "$installed" != "$version" ] \
  && ! "$python" -m pip cache list "llama_cpp_python-$version-*" --format=abspath 2>/dev/null | grep -q .; then
  echo "building llama.cpp $version (llama-cpp-python) for this CPU, once: a few minutes; later installs reuse it"
  (
    start=$(date +%s)
    while sleep 30; do echo "  ... still building llama.cpp ($(($(date +%s) - start)) s)"; done
  ) &
  ticker=$!
  trap 'kill "$ticker" 2>/dev/null' EXIT
fi
"$python" -m pip install -q --no-deps --require-hashes -r "$lock"
