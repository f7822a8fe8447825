"""One log line per request: method, path (no query string: it could carry anything), status, duration."""

import logging
import time

log = logging.getLogger("wizchat.runtime.access")


def request_log(get_response):
    def middleware(request):
        started = time.monotonic()
        response = get_response(request)
        log.info("%s %s %s %.1fms", request.method, request.path[:200], response.status_code,
                 (time.monotonic() - started) * 1000)
        return response

    return middleware
