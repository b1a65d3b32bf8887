"""URL credentials out of every text edgecam shows: one rule for logs, errors and pages.

Standard library only, so the camera loop, the MQTT client and ``edgecam fleet`` (which must not
import OpenCV) all hide secrets the same way.
"""

from __future__ import annotations

import re

# scheme://rest-of-the-url, anywhere in a text (the URL ends at white space).
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*://)(\S*)", re.IGNORECASE)
# Query parameters IP cameras take credentials in (video.cgi?user=admin&pwd=...).
_SECRET_PARAM = re.compile(r"([?&;](?:password|passwd|pass|pwd|secret|token|access_token|api_?key|key|auth|sig|"
                           r"signature)=)[^&;#]*", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with the user info of every URL in it (and password-like query values) as ``***``.

    ``rtsp://admin:pw@cam:554/s`` → ``rtsp://***@cam:554/s``. The user info ends at the last
    ``@`` before the query, so an unencoded ``@`` or ``/`` in a password is hidden too (an ``@``
    in a path hides the host as well: better too much than a password).
    """
    def hide(match: re.Match) -> str:
        scheme, rest = match.groups()
        query = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, query)
        if at >= 0:
            rest = "***" + rest[at:]
        return scheme + _SECRET_PARAM.sub(r"\1***", rest)

    return _URL.sub(hide, text)
