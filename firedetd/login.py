"""The status page's optional login: a PBKDF2-SHA256 password hash from the config (`http.password_hash`),
sessions held in memory behind an HttpOnly, SameSite=Strict cookie, and a CSRF token every POST must carry.

    firedetd hash-password          asks for a password, prints the string for http.password_hash

The hash string is `pbkdf2_sha256$ITERATIONS$SALT$HASH` (salt and hash in URL-safe base64), so the cost can be
raised later without breaking stored hashes. Sessions live in memory only: a restart logs everybody out, which
is the safe way round for a fire alarm's console.
"""

import base64
import collections
import hashlib
import hmac
import secrets
import threading
from typing import Optional

from .clock import monotonic_ns
from .errors import ConfigError

SCHEME = "pbkdf2_sha256"
# 0.08 s per check on the x86 development machine; a Nano's Cortex-A57 is several times slower (not measured
# there): still well under a second, and paid once per login, never per request
DEFAULT_ITERATIONS = 200000
MIN_ITERATIONS = 1000         # tests hash with this; anything lower is a mistake, not a choice
COOKIE = "firedetd_session"
MAX_SESSIONS = 64             # a flood of logins cannot grow memory: the oldest session goes first
FAILED_LOGINS_PER_MINUTE = 10  # then 429 until the minute is over: PBKDF2's cost alone still lets hundreds in

Session = collections.namedtuple("Session", "csrf expires_ns")


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS, salt: Optional[bytes] = None) -> str:
    """The http.password_hash string for `password`: PBKDF2-SHA256 with a random 16-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "%s$%d$%s$%s" % (SCHEME, iterations, _b64(salt), _b64(digest))


def parse_password_hash(encoded: str, path: str = "http.password_hash"):
    """(iterations, salt, digest) of a password hash string, or ConfigError naming `path` (never the value)."""
    parts = (encoded or "").split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ConfigError("%s: not a %s$ITERATIONS$SALT$HASH string; make one with `firedetd hash-password`"
                          % (path, SCHEME))
    try:
        iterations, salt, digest = int(parts[1]), _unb64(parts[2]), _unb64(parts[3])
    except ValueError:
        raise ConfigError("%s: the iterations, salt or hash is not readable; make a new one with "
                          "`firedetd hash-password`" % path)
    if iterations < MIN_ITERATIONS or len(salt) < 8 or len(digest) != 32:
        raise ConfigError("%s: at least %d iterations, an 8-byte salt and a 32-byte SHA-256 hash are needed; "
                          "make a new one with `firedetd hash-password`" % (path, MIN_ITERATIONS))
    return iterations, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the hash string (constant-time comparison of the digests)."""
    iterations, salt, digest = parse_password_hash(encoded)
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(candidate, digest)


def _b64(raw):
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text):
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("not base64")


def _token_key(token):
    # sessions are looked up by a digest of the cookie, so neither a dict probe's timing nor a memory dump of
    # the table gives a usable token away
    return hashlib.sha256(token.encode("utf-8")).digest()


class Sessions(object):
    """Logged-in sessions: random tokens with an expiry and a CSRF token each; thread-safe."""

    def __init__(self, lifetime_s: float, max_sessions: int = MAX_SESSIONS):
        self.lifetime_ns = int(lifetime_s * 1e9)
        self.max_sessions = max_sessions
        self._sessions = collections.OrderedDict()
        self._lock = threading.Lock()
        self._failures = collections.deque()

    def create(self, now_ns: Optional[int] = None):
        """A new session: (cookie token, CSRF token)."""
        now = now_ns if now_ns is not None else monotonic_ns()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[_token_key(token)] = Session(csrf, now + self.lifetime_ns)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return token, csrf

    def get(self, token: Optional[str], now_ns: Optional[int] = None) -> Optional[Session]:
        """The live session of a cookie token, or None (unknown, or expired: then it is forgotten)."""
        if not token:
            return None
        key, now = _token_key(token), now_ns if now_ns is not None else monotonic_ns()
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires_ns <= now:
                del self._sessions[key]
                return None
            return session

    def end(self, token: Optional[str]) -> None:
        """Forget a session (logout)."""
        if token:
            with self._lock:
                self._sessions.pop(_token_key(token), None)

    def login_allowed(self, now_ns: Optional[int] = None) -> bool:
        """False while FAILED_LOGINS_PER_MINUTE wrong passwords were given in the last minute."""
        now = now_ns if now_ns is not None else monotonic_ns()
        with self._lock:
            while self._failures and now - self._failures[0] > 60 * 10 ** 9:
                self._failures.popleft()
            return len(self._failures) < FAILED_LOGINS_PER_MINUTE

    def login_failed(self, now_ns: Optional[int] = None) -> None:
        with self._lock:
            self._failures.append(now_ns if now_ns is not None else monotonic_ns())


def csrf_matches(session: Optional[Session], token: Optional[str]) -> bool:
    """Whether a POST's CSRF token is its session's (constant-time)."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode("ascii"), token.encode("utf-8", "replace"))


def cookie_token(cookie_header: Optional[str]) -> Optional[str]:
    """The session token in a Cookie header, or None."""
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def is_loopback(host: str) -> bool:
    """Whether an http.addr host only listens on this machine."""
    host = host.strip("[]").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")
