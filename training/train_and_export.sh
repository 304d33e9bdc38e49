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
# without its checkpoint. So each step runs in the background and gets the signal passed on
# as SIGTERM (a background job ignores SIGINT, and Ctrl-C reaches this shell's trap too).
# Its exit code is the step's.
passing_signals_on() {
  "$@" &
  step=$!
  trap 'kill -TERM "$step" 2>/dev/null' TERM INT
  status=0
  wait "$step" || status=$?
  while kill -0 "$step" 2>/dev/null; do  # a signal ended the wait: the step is stopping
    status=0
    wait "$step" || status=$?
  done
  trap - TERM INT
  return "$status"
}

passing_signals_on python -m training.train --data "$DATA" --run-dir "$RUN_DIR" "$@" || exit
passing_signals_on python -m export --run-dir "$RUN_DIR" --base-path "$MODEL_BASE_PATH" --skip-if-published
