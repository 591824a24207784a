#!/bin/bash
# usage: zoo_run.sh TAG PYTHONPATH-or-empty zoo folders...
tag=$1; pp=$2; shift 2
cd /tmp/plant12-user
for z in "$@"; do
  n=$(basename $z)
  PYTHONPATH=$pp /work/venvs/plant12/bin/pytest --model=$z -n 2 --dist loadfile --inputs="$z/{model}.npz" --calibration-data="$z/{model}.calib.npz" -p no:cacheprovider -q -rfE --report-json=/work/plant12/zoo-$tag-$n.json > /work/plant12/zoo-$tag-$n.out 2>&1
  echo "$n exit=$? $(tail -1 /work/plant12/zoo-$tag-$n.out)"
done
