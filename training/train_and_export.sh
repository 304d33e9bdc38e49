#!/bin/sh
# The trainer image's entry point: train RUN_DIR on DATA (resuming from its checkpoint), then
# publish it as the next version of MODEL_BASE_PATH. Extra arguments go to training.train,
# except --run-dir (or any prefix argparse would take for it, --ru...): export must read the
# folder training wrote, so the run folder is RUN_DIR (docker compose run -e RUN_DIR=...).
set -u
for a in "$@"; do
  case "$a" in
    --ru*)
      echo 'train-and-export: name the run folder with -e RUN_DIR=/runs/<name>, not --run-dir (export reads RUN_DIR)' >&2
      exit 2 ;;
  esac
done

# As the container's PID 1, this shell would ignore `docker stop`'s SIGTERM (the kernel gives
# PID 1 no signal it has no handler for), and Docker would kill the training 10 s later
# without its checkpoint. So the training runs in the background and gets the signal passed
# on as SIGTERM: a background job ignores SIGINT, and Ctrl-C reaches this shell's trap too.
python -m training.train --data "$DATA" --run-dir "$RUN_DIR" "$@" &
training=$!
trap 'kill -TERM "$training" 2>/dev/null' TERM INT
status=0
wait "$training" || status=$?
while kill -0 "$training" 2>/dev/null; do  # a signal ended the wait: the checkpoint is saving
  status=0
  wait "$training" || status=$?
done
[ "$status" -eq 0 ] || exit "$status"
python -m export --run-dir "$RUN_DIR" --base-path "$MODEL_BASE_PATH" --skip-if-published
