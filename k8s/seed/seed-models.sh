#!/bin/sh
# Seed the models volume with the model versions shipped in this image, once.
#
#   seed-models.sh SRC_BASE DEST_BASE      (e.g. /seed/models/cifar10 /models/cifar10)
#
# Runs as an initContainer of every TF Serving pod. It copies only when DEST_BASE holds no
# version folder yet: after the first seed the volume is the source of truth, so versions
# rolled out (or removed for a rollback) by an operator are never undone by a pod restart.
# Each version is copied under a temp name TF Serving ignores (not an integer), then renamed
# with `mv -T` (one rename(2)): TF Serving never sees a half-copied version, and when two
# pods seed at once the loser's rename fails on the non-empty target and it drops its copy.
# Newest version first: "seeded" means "holds a version", so a seed cut short (the pod killed
# mid-copy) or a second pod that starts meanwhile must find the version to serve, not an
# old one; only older versions, kept for rollback, can then be missing.
set -eu
src=${1:?source base path}
dest=${2:?destination base path}

has_version() {
  for d in "$1"/*/; do
    case "$(basename "$d")" in
      '' | *[!0-9]*) ;;
      *) return 0 ;;
    esac
  done
  return 1
}

mkdir -p "$dest"
if has_version "$dest"; then
  echo "seed-models: $dest already has versions; nothing to do"
  exit 0
fi
for v in $(ls "$src" | grep -Ex '[0-9]+' | sort -rn); do
  [ -d "$src/$v" ] || continue
  tmp="$dest/.tmp-seed-$v-$(uname -n)-$$"
  rm -rf "$tmp"
  cp -R "$src/$v" "$tmp"
  if mv -T "$tmp" "$dest/$v" 2>/dev/null; then
    echo "seed-models: version $v -> $dest/$v"
  else
    rm -rf "$tmp"
    echo "seed-models: version $v already seeded by another pod"
  fi
done
