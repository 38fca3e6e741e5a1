#!/bin/sh
# Writes kjv.txt, the demo model's training text: ten books of the King James Bible (public
# domain), one verse per line without its reference, from Debian's bible-kjv package
# (apt-get install bible-kjv). The committed kjv.txt is this script's output.
set -eu
cd "$(dirname "$0")"
for book in Genesis Exodus Ruth Psalms Proverbs Ecclesiastes Matthew Mark Luke John; do
  bible -f "$book 1:1-150:200" | sed -E 's/^[A-Za-z]+[0-9]+:[0-9]+ //'
done > kjv.txt
