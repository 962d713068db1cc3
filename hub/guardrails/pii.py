"""PII detection: RE2 candidate patterns confirmed by validators (Luhn, mod 97, SSN rules, parsers).

Patterns only propose candidates; a candidate becomes a hit when its validator accepts it, which
keeps false positives low (a 16-digit order number that fails Luhn is not a card).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers
import re2

from .config import PII_ENTITIES, PiiEntity
from .text import Hit

__all__ = [
    "PII_ENTITIES",
    "PiiEntity",
    "PiiScanner",
    "PatternRule",
    "iban_valid",
    "luhn_valid",
    "ssn_valid",
]

Validator = Literal["none", "luhn", "iban", "ssn", "ip"]


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check over a string of digits."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# ISO 13616 IBAN lengths per country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """Country length and ISO 7064 mod 97-10 check (spaces ignored)."""
    value = iban.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(value[:2]) != len(value) or not value.isalnum():
        return False
    rotated = value[4:] + value[:4]
    return int("".join(str(int(ch, 36)) for ch in rotated)) % 97 == 1


_SSN_SAMPLES = frozenset({"078051120", "219099999", "457555462", "123456789"})


def ssn_valid(ssn: str) -> bool:
    """US SSN structure: area not 000/666/9xx, group not 00, serial not 0000, no published samples."""
    digits = ssn.replace("-", "").replace(" ", "")
    if len(digits) != 9 or not digits.isdigit() or digits in _SSN_SAMPLES:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ip_valid(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _card_valid(value: str) -> bool:
    digits = value.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "none": lambda _value: True,
    "luhn": _card_valid,
    "iban": iban_valid,
    "ssn": ssn_valid,
    "ip": _ip_valid,
}


def _rx(pattern: str) -> Any:
    return re2.compile(pattern)


_EMAIL = _rx(r"(?i)\b[a-z0-9][a-z0-9._%+'-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\b")
_CARD = _rx(r"\b[2-6]\d{3}(?:[ -]?\d{3,4}){2,3}(?:[ -]?\d{1,3})?\b")
_IBAN = _rx(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_SSN = _rx(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b")
_IPV4 = _rx(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = _rx(r"(?i)(?:[0-9a-f]{1,4}:|::)(?:[0-9a-f]{0,4}:){1,6}[0-9a-f]{0,4}(?:%[0-9a-z]+)?")
_PHONE = _rx(r"(?:\+|\b)\d[\d ().-]{5,20}\d\b")


@dataclass(frozen=True, slots=True)
class PatternRule:
    """A named RE2 pattern with an optional validator (``luhn``, ``iban``, ``ssn``, ``ip``)."""

    name: str
    regex: Any
    validator: Validator = "none"
    group: int = 0

    @classmethod
    def build(
        cls, name: str, pattern: str, *, ignore_case: bool = False, validator: Validator = "none", group: int = 0
    ) -> PatternRule:
        """Compile ``pattern`` on RE2 (raises ``re2.error`` when it is not valid RE2)."""
        return cls(name, re2.compile(("(?i)" if ignore_case else "") + pattern), validator, group)

    def scan(self, text: str) -> list[Hit]:
        """Hits whose captured value passes the validator."""
        check = _VALIDATORS[self.validator]
        hits: list[Hit] = []
        for m in self.regex.finditer(text):
            start, end = m.span(self.group)
            if start < 0 or end <= start:
                continue
            if check(text[start:end]):
                hits.append(Hit(self.name, self.name, start, end))
        return hits


class PiiScanner:
    """Detect the configured PII ``entities`` and ``custom`` pattern rules in text.

    Args:
        entities: any of ``email, phone, card, iban, ssn, ip`` (default: all).
        phone_regions: regions used to read numbers written without ``+`` (``+`` numbers always parse).
        custom: extra named patterns, reported with their own name as the label.
    """

    def __init__(
        self,
        entities: Iterable[PiiEntity] = PII_ENTITIES,
        *,
        phone_regions: Sequence[str] = ("US", "GB"),
        custom: Sequence[PatternRule] = (),
    ) -> None:
        self.entities = tuple(dict.fromkeys(entities))
        self.phone_regions = tuple(r.upper() for r in phone_regions)
        rules = {
            "email": PatternRule("email", _EMAIL),
            "card": PatternRule("card", _CARD, "luhn"),
            "iban": PatternRule("iban", _IBAN),
            "ssn": PatternRule("ssn", _SSN, "ssn"),
            "ip": PatternRule("ip", _IPV4, "ip"),
        }
        self._rules = [rules[e] for e in self.entities if e in rules]
        if "ip" in self.entities:
            self._rules.append(PatternRule("ip", _IPV6, "ip"))
        self._custom = tuple(custom)

    def scan(self, text: str) -> list[Hit]:
        """All validated PII hits in ``text`` (overlapping phone candidates yield to other entities)."""
        hits: list[Hit] = []
        for rule in self._rules:
            hits.extend(self._ibans(text) if rule.name == "iban" else rule.scan(text))
        if "phone" in self.entities:
            taken = [(h.start, h.end) for h in hits]
            hits.extend(h for h in self._phones(text) if not any(h.start < e and s < h.end for s, e in taken))
        for rule in self._custom:
            hits.extend(rule.scan(text))
        return hits

    @staticmethod
    def _ibans(text: str) -> list[Hit]:
        """IBAN candidates are cut to the country's length before the mod-97 check."""
        hits: list[Hit] = []
        for m in _IBAN.finditer(text):
            start = m.start()
            length = _IBAN_LENGTHS.get(text[start : start + 2])
            if length is None:
                continue
            end, count = start, 0
            while end < m.end() and count < length:
                count += text[end] != " "
                end += 1
            if count == length and iban_valid(text[start:end]):
                hits.append(Hit("iban", "iban", start, end))
        return hits

    def _phones(self, text: str) -> list[Hit]:
        hits: list[Hit] = []
        for m in _PHONE.finditer(text):
            start, end = m.span()
            lo = max(0, start - 1)
            window = text[lo : end + 1]
            for region in self.phone_regions:
                matcher = phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID)
                found = [(lo + pm.start, lo + pm.end) for pm in matcher]
                if found:
                    hits.extend(Hit("phone", "phone", s, e) for s, e in found)
                    break
        return hits
