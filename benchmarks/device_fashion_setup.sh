#!/bin/bash
# Once, on the CPU machine, in the repository root whose checkout the device tool sends (/work/main):
# Fashion-MNIST's four IDX files, xz-compressed (30.9 MB of gzip -> about 26 MB), in .fashion/, and the
# wheels the GPU machine lacks (pydantic and what it needs, lark) in .whl/, both listed in
# .git/info/exclude so that git ignores them and `run` carries them by name (carry [".fashion", ".whl"]).
# FASHION_SRC: where the .gz files are (default: Debian's dataset-fashion-mnist); PYTHON: for pip.
set -euo pipefail
PY=${PYTHON:-python3}
SRC=${FASHION_SRC:-/usr/share/datasets/fashion-mnist}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")" .fashion .whl
for p in /.fashion/ /.whl/; do grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >> "$exclude"; done
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ ! -s ".fashion/$f.xz" ]; then
    gzip -dc "$SRC/$f.gz" | nice xz -9e -T1 > ".fashion/$f.xz.tmp" && mv ".fashion/$f.xz.tmp" ".fashion/$f.xz"
  fi
done
# the versions this project's environment runs (pydantic 2.14 needs typing_extensions >= 4.16)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing_extensions==4.16.0 lark==1.3.1
ls -l .fashion .whl
git status --porcelain --ignored .fashion .whl
echo "what travels: $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) bytes tracked," \
  "$(du -cb .fashion .whl | tail -1 | cut -f1) carried (the limit is 67108864)"
