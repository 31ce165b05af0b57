"""E-mail addresses, by an RFC 5322-lite pattern.

Rules:

* local part: letters, digits and ``. _ % + - '`` as commonly used (no quoted strings, no comments), not
  starting or ending with a dot and without two dots in a row;
* domain: dot-separated labels of letters and digits (hyphens inside a label), ending in a top-level domain
  of at least two letters; internationalised (Unicode) letters are accepted;
* a sentence's full stop, a comma, a closing bracket or quote after the address is not part of it
  ("mail: j.peeters@politie.be." gives j.peeters@politie.be);
* guards: the address is not glued to a preceding word character, dot or "@", nor followed by one
  (so "a@b.c" and "x@y.be@z" are not addresses).

value: the local part as written, "@", the domain in lowercase.
"""

from __future__ import annotations

import re

from workers.entities.model import Entity

_LOCAL_CHAR = r"[^\W][\w%+'-]*"  # a dot-free piece of the local part
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
EMAIL = re.compile(
    rf"(?<![\w.@+'%-])(?P<local>{_LOCAL_CHAR}(?:\.{_LOCAL_CHAR})*)"
    rf"@(?P<domain>(?:{_LABEL}\.)+[^\W\d_]{{2,63}})"
    r"(?![\w@-]|\.[^\W_])")
CONFIDENCE = 0.95


def find_emails(text: str) -> list[Entity]:
    """Every e-mail address in `text` (see the module's rules)."""
    found = []
    for match in EMAIL.finditer(text):
        local, domain = match.group("local"), match.group("domain").lower()
        if "_" in domain:
            continue
        found.append(Entity("email", f"{local}@{domain}", match.group(0), match.start(), match.end(), CONFIDENCE,
                            {"domain": domain, "local_part": local}))
    return found
