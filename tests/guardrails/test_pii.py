"""PII entities: valid values are found, values failing their checksum or structure are not."""

from __future__ import annotations

import pytest

from hub.guardrails.pii import PatternRule, PiiScanner, iban_valid, luhn_valid, ssn_valid

SCANNER = PiiScanner()


def found(text: str) -> list[tuple[str, str]]:
    return [(h.rule, text[h.start : h.end]) for h in SCANNER.scan(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("mail john.doe@example.com today", "email", "john.doe@example.com"),
        ("card 4111 1111 1111 1111 ok", "card", "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004", "card", "5500-0000-0000-0004"),
        ("amex 378282246310005", "card", "378282246310005"),
        ("iban GB82 WEST 1234 5698 7654 32 thanks", "iban", "GB82 WEST 1234 5698 7654 32"),
        ("DE89 3704 0044 0532 0130 00", "iban", "DE89 3704 0044 0532 0130 00"),
        ("NL91ABNA0417164300", "iban", "NL91ABNA0417164300"),
        ("ssn 536-22-1234", "ssn", "536-22-1234"),
        ("call +1 (212) 555-0199", "phone", "+1 (212) 555-0199"),
        ("call 2125550199 now", "phone", "2125550199"),
        ("uk 020 7946 0958", "phone", "020 7946 0958"),
        ("host 192.168.1.10 up", "ip", "192.168.1.10"),
        ("v6 2001:db8::8a2e:370:7334 up", "ip", "2001:db8::8a2e:370:7334"),
    ],
)
def test_valid_values_are_found(text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "order 1234567890123456",  # Luhn fails
        "iban GB82 WEST 1234 5698 7654 33",  # mod 97 fails
        "iban GB82 WEST 1234 5698 7654",  # too short for GB
        "ssn 666-22-1234",  # area 666
        "ssn 900-22-1234",  # area 9xx
        "ssn 536-00-1234",  # group 00
        "ssn 536-22-0000",  # serial 0000
        "ssn 078-05-1120",  # published sample
        "zip 12345",
        "date 2024-01-15 at 10:30:45",
        "ip 999.1.1.1",
        "version 1.2.3",
        "mail john@localhost",
    ],
)
def test_invalid_values_are_not_found(text: str) -> None:
    assert found(text) == []


def test_validators() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112") and not luhn_valid("41x1")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("XX82WEST12345698765432")
    assert ssn_valid("536 22 1234") and not ssn_valid("123-45-6789")


def test_entities_can_be_narrowed_and_custom_rules_added() -> None:
    scanner = PiiScanner(["email"], custom=[PatternRule.build("employee-id", r"\bEMP-\d{6}\b")])
    text = "EMP-123456 at a@example.com, card 4111 1111 1111 1111"
    assert [(h.rule, text[h.start : h.end]) for h in scanner.scan(text)] == [
        ("email", "a@example.com"),
        ("employee-id", "EMP-123456"),
    ]


def test_custom_rule_with_validator_and_group() -> None:
    rule = PatternRule.build("acct", r"acct=(\d{13,19})", validator="luhn", group=1)
    assert [h.rule for h in rule.scan("acct=4111111111111111")] == ["acct"]
    assert rule.scan("acct=4111111111111112") == []


def test_phone_overlapping_a_card_is_reported_once() -> None:
    assert [r for r, _ in found("4111111111111111")] == ["card"]
