"""Merging W3C ``baggage`` so that Sentry's members are ours and everyone else's survive.

A message may already carry baggage from another vendor when busprop injects; overwriting it
would lose that vendor's context. Here the ``sentry-*`` members are replaced, other
members keep their order, and the result is capped at the W3C limit by dropping whole members,
third-party ones first, so the trace itself always fits.
"""

from __future__ import annotations

MAX_LENGTH = 8192
MAX_MEMBERS = 180
SENTRY_PREFIX = "sentry-"


def _members(header: str | None) -> list[str]:
    if not header:
        return []
    return [member.strip() for member in header.split(",") if member.strip()]


def _key(member: str) -> str:
    return member.split("=", 1)[0].split(";", 1)[0].strip()


def has_only_sentry_members(header: str) -> bool:
    """Whether every member of ``header`` is Sentry's: merging it into another baggage adds nothing.

    The usual case of a message that is passed on (an echo, a forward, a retry): the baggage it
    carries is the previous hop's, with nothing another vendor would miss.
    """
    return all(member.lstrip().startswith(SENTRY_PREFIX) for member in header.split(",") if member.strip())


def merge_baggage(existing: str | None, outgoing: str) -> str:
    """Combine the baggage already in a message with the outgoing one.

    ``existing`` loses its ``sentry-*`` members; third-party members of ``outgoing`` are added
    when ``existing`` does not already name them; ``outgoing``'s Sentry members come last, as
    sentry-python's HTTP integrations place them.
    """
    third_party: list[str] = []
    seen: set[str] = set()
    sentry: list[str] = []
    for member in _members(existing):
        key = _key(member)
        if not key.startswith(SENTRY_PREFIX) and key not in seen:
            seen.add(key)
            third_party.append(member)
    for member in _members(outgoing):
        key = _key(member)
        if key.startswith(SENTRY_PREFIX):
            sentry.append(member)
        elif key not in seen:
            seen.add(key)
            third_party.append(member)
    return _cap(sentry, third_party)


def _cap(sentry: list[str], third_party: list[str]) -> str:
    kept_sentry: list[str] = []
    length = -1
    for member in sentry[:MAX_MEMBERS]:
        if length + 1 + len(member) > MAX_LENGTH:
            break
        kept_sentry.append(member)
        length += 1 + len(member)
    kept_third: list[str] = []
    room = MAX_MEMBERS - len(kept_sentry)
    for member in third_party:
        if len(kept_third) >= room:
            break
        if length + 1 + len(member) > MAX_LENGTH:
            continue
        kept_third.append(member)
        length += 1 + len(member)
    return ",".join(kept_third + kept_sentry)
