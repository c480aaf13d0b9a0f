#!/bin/bash
# A/B of two hoist binaries (BASE, NEW) uploading one file and the same bytes from stdin into one
# store process (BASE's `hoist store`), alternating, ROUNDS rounds; prints wall, peak RSS, CPU.
# Usage: BASE=path/to/old/hoist NEW=path/to/new/hoist [SIZE_MIB=512] [ROUNDS=4] bench/engine_ab.sh
set -e
MAIN=${BASE:?set BASE to the baseline hoist binary}
ENG=${NEW:?set NEW to the hoist binary to compare}
D=${WORK:-/tmp/hoist-ab}
SIZE_MIB=${SIZE_MIB:-512}
rm -rf $D/store $D/state; mkdir -p $D/store $D/state
[ -f $D/in.bin ] || head -c $((SIZE_MIB*1024*1024)) /dev/urandom > $D/in.bin
export HOIST_STORE_ACCESS_KEY=benchaccess HOIST_STORE_SECRET_KEY=benchsecret0123456789
$MAIN store --listen 127.0.0.1:0 --data $D/store > $D/store.out 2>&1 &
SP=$!
trap "kill $SP" EXIT
sleep 2
URL=$(head -1 $D/store.out | sed 's/listening on //')
export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret0123456789 AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1 HOIST_STATE_DIR=$D/state
aws --endpoint-url $URL s3 mb s3://bench >/dev/null
for round in $(seq 1 ${ROUNDS:-4}); do
  for name in main engine; do
    bin=$MAIN; [ $name = engine ] && bin=$ENG
    /usr/bin/time -f "$name file round$round wall=%e s rss=%M KiB cpu=%U+%S" $bin put $D/in.bin s3://bench/$name-$round --endpoint-url $URL --quiet 2>&1 | grep wall
    /usr/bin/time -f "$name stdin round$round wall=%e s rss=%M KiB cpu=%U+%S" sh -c "$bin put - s3://bench/$name-s-$round --endpoint-url $URL --quiet < $D/in.bin" 2>&1 | grep wall
  done
done
