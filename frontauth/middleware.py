"""The one aiohttp middleware of the issuing app: every request passes these steps in order.

1. reject a body with a content coding (frontauth.content_coding).
2. count the request against its rate-limit rule, reading ahead the records
   it names, and respond 429 when it is over the limit (frontauth.ratelimit).
3. run the handler, inside the read-ahead block of step 2.
4. turn an OAuthError, a storage outage or an unexpected exception into its
   response (frontauth.responses.error_response).
5. record the final status of token and sign-in requests (frontauth.metrics).
6. add the security headers and write the access log line, to every
   response, including the HTTP exceptions that aiohttp sends itself.

One middleware instead of one per step: aiohttp wraps each middleware around
the handler on every request, and on the token endpoint those layers cost
more than some of the steps.
"""

from __future__ import annotations

import time
import typing

from aiohttp import web

from frontauth.content_coding import reject_content_coding
from frontauth.metrics import METRICS, OBSERVED_PATHS, observe_response
from frontauth.ratelimit import admit
from frontauth.responses import add_security_headers, error_response
from frontauth.stores import RequestReadAhead

Handler = typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]]


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        try:
            reject_content_coding(request)
            with RequestReadAhead():
                response = await admit(request)
                if response is None:
                    response = await handler(request)
        except Exception as exc:
            response = error_response(request, exc)
        if request.path in OBSERVED_PATHS:
            metrics = request.app.get(METRICS)
            if metrics is not None:
                observe_response(metrics, request, response, started)
    except web.HTTPException as exc:
        # Redirects, static files and the 404s off the protocol paths: aiohttp
        # writes these responses itself, with the security headers added here.
        add_security_headers(request, exc, started)
        raise
    add_security_headers(request, response, started)
    return response
