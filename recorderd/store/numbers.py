"""Phone numbers as the index keeps them: E.164 beside the raw SIP user part.

A caller's number reaches us in many spellings (``07700 900123``, ``+447700900123``,
``00447700900123``, ``sip:07700900123@trunk;user=phone``, ``tel:+44-7700-900123``). The index
stores one canonical form per party, so a search in any spelling finds the same calls:

* a user part that parses as a possible number for the site's region (the ``phonenumbers``
  library, ITU-T E.164 / Ofcom numbering via libphonenumber's metadata) is kept as ``+<cc><nsn>``;
* anything shorter than :data:`MIN_NATIONAL_DIGITS` digits without a ``+`` or ``00`` prefix is an
  extension (``201``, ``2502``): kept as its digits, because libphonenumber would happily read ``1000``
  as a British number;
* a user part with no digits at all (``alice``, ``anonymous``) has no number: "".
"""

from __future__ import annotations

import re
import urllib.parse

import phonenumbers


def user_part(uri: str) -> str:
    """The user part of a SIP/SIPS/tel URI: ``sip:07700900123@host;user=phone`` -> ``07700900123``.

    RFC 3261 section 19.1.1 (``sip:user;params@host``) and RFC 3966 (``tel:+44...;params``); escapes
    are decoded. A URI without a user part (``sip:host``) gives "".
    """
    text = uri.strip()
    if text.startswith("<"):
        text = text[1 : text.find(">")] if ">" in text else text[1:]
    scheme, colon, rest = text.partition(":")
    if not colon:
        return ""
    scheme = scheme.lower()
    if scheme == "tel":
        user = rest
    elif scheme in ("sip", "sips"):
        user, at, _ = rest.rpartition("@")
        if not at:
            return ""
    else:
        return ""
    user = user.split(";", 1)[0].split(":", 1)[0]  # user params; sip:user:password@host
    return urllib.parse.unquote(user)


MIN_NATIONAL_DIGITS = 7  # the shortest subscriber numbers in use are longer; extensions are shorter
_VISUAL = re.compile(r"[\s().\-/]")
_DIALLABLE = re.compile(r"\+?[0-9]+")


def normalise_number(text: str, region: str = "GB") -> str:
    """The canonical form of a number, a user part or a SIP/tel URI (see the module docstring)."""
    raw = text.strip()
    if ":" in raw or "@" in raw:
        raw = user_part(raw if ":" in raw else "sip:" + raw)
    compact = _VISUAL.sub("", raw.split(";", 1)[0])
    if not _DIALLABLE.fullmatch(compact):
        return ""
    digits = compact.lstrip("+")
    international = compact.startswith("+") or compact.startswith("00")
    if not international and len(digits) < MIN_NATIONAL_DIGITS:
        return digits
    try:
        parsed = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException:
        return digits
    if not phonenumbers.is_possible_number(parsed):
        return digits
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
