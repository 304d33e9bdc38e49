"""Security headers on every response: nothing third-party, no framing, no sniffing."""

from __future__ import annotations

from flask import Flask, Response, request

# 'self' only. blob:/data: for image previews and canvas snapshots, mediastream: for the
# webcam <video>. No inline scripts or styles, no CDN, no web fonts: the page works offline.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


UNCACHED = ("/metrics", "/healthz", "/readyz")


def install(app: Flask) -> None:
    """Add HEADERS to every response (without overriding a view's own choice)."""

    @app.after_request
    def _secure(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "application/json" or request.path in UNCACHED:
            # answers about this moment (predictions, versions, health): no cache may keep them
            response.headers.setdefault("Cache-Control", "no-store")
        return response
