"""gunicorn settings for the proxy, under `make serve` and in the proxy image (which sets
PROXY_HOST=0.0.0.0 and GUNICORN_ACCESS_LOG=1). Environment: PROXY_HOST, PROXY_PORT,
GUNICORN_WORKERS, GUNICORN_THREADS, GUNICORN_ACCESS_LOG=1, PROMETHEUS_MULTIPROC_DIR.

A stopping worker gets 10 s to finish its requests (the model-server timeout is 5 s; in
Kubernetes 5 s of preStop + 10 s fit the pod's 30 s grace), a silent one is restarted after 60 s.

gthread workers: the per-request work is Pillow decoding and a model-server call, both of
which release the GIL, so a few threads per process keep the CPU busy at low memory.
"""

from __future__ import annotations

import os

bind = f"{os.environ.get('PROXY_HOST', '127.0.0.1')}:{os.environ.get('PROXY_PORT', '5000')}"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
graceful_timeout = 10
timeout = 60
# Idle keep-alive connections are kept longer than a load balancer in front keeps its own
# (ingress-nginx: 60 s, an AWS ALB: 60 s), so that gunicorn never closes one at the moment the
# balancer sends a request on it: that request would fail with a 502, and a POST is not retried.
# gunicorn's default is 2 s.
keepalive = 75
# The longest request line gunicorn takes (its default, 4094, is half of nginx's 8 KiB): behind
# compose's front, a URL of 4-8 KiB passed nginx and got gunicorn's HTML 414, not JSON. Now
# the front refuses a longer one first, in JSON (proxy/nginx.conf). Straight to gunicorn
# (`make serve`), a longer line still gets gunicorn's own HTML 414.
limit_request_line = 8190
ACCESS_LOG = os.environ.get("GUNICORN_ACCESS_LOG") == "1"
accesslog = "-" if ACCESS_LOG else None
# gunicorn's default line plus the request id (X-Request-ID, proxy/request_log.py), the
# client behind a proxy or Ingress (X-Forwarded-For) and the time taken in milliseconds.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
    "id=%({x-request-id}o)s fwd=%({x-forwarded-for}i)s ms=%(M)s"
)
errorlog = "-"
loglevel = "info"
# One line format for gunicorn's own messages and the proxy's (time, level, pid, logger): the
# proxy's loggers had no handler, so an unhandled error printed a bare message.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"},
        "access": {"format": "%(message)s"},  # the access line has its own time
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "stream": "ext://sys.stderr",
        },
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stdout",
        },
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        # With logconfig_dict set, gunicorn writes access lines whatever `accesslog` says: this
        # logger's handlers decide.
        "gunicorn.access": {
            "level": "INFO",
            "handlers": ["stdout"] if ACCESS_LOG else [],
            "propagate": False,
        },
    },
}
# gunicorn opens a control socket at one fixed path per user ($XDG_RUNTIME_DIR or ~/.gunicorn):
# two stacks side by side (make serve's PROXY_PORT) would share it; the first to stop deletes it.
control_socket_disable = True


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics (prometheus_client)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
