"""Email normal form: what FastAPI Users' ``EmailStr`` fields store; clear words for what is invalid."""

from __future__ import annotations

import pytest
from fastapi_users.schemas import BaseUserCreate
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from usersctl.emails import InvalidEmail, normalize_email
from usersctl.errors import InvalidInput


def stored_by_fastapi_users(address: str) -> str:
    """The address as FastAPI Users' create schema keeps it (pydantic's ``EmailStr``)."""
    return str(BaseUserCreate(email=address, password="x").email)


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice@Example.COM", "Alice@example.com"),  # domain lowercased, local part kept
        ("  bob@example.org\t", "bob@example.org"),
        ("user+tag@Sub.Example.co.uk", "user+tag@sub.example.co.uk"),
        ("o'neil@example.ie", "o'neil@example.ie"),
        ("POSTMASTER@Example.com", "postmaster@example.com"),  # RFC 5321's case-free mailbox
        ("José@Exämple.com", "José@exämple.com"),
        ("ÅNGSTRÖM@EXAMPLE.COM", "ÅNGSTRÖM@example.com"),
        ("user@XN--BCHER-KVA.com", "user@bücher.com"),  # punycode shown as Unicode
        ("alice@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "alice@example.com"),  # full-width
        ("用户@例子.广告", "用户@例子.广告"),
    ],
)
def test_normal_form_is_what_fastapi_users_stores(typed: str, normal: str) -> None:
    assert normalize_email(typed) == normal
    assert stored_by_fastapi_users(typed) == normal


@given(st.emails())
def test_normal_form_matches_email_str_for_any_address(address: str) -> None:
    try:
        expected = stored_by_fastapi_users(address)
    except ValidationError:
        with pytest.raises(InvalidEmail):
            normalize_email(address)
    else:
        assert normalize_email(address) == expected


@given(st.emails())
def test_normalising_twice_changes_nothing_and_case_never_matters_to_the_domain(
    address: str,
) -> None:
    try:
        normal = normalize_email(address)
    except InvalidEmail:
        return
    assert normalize_email(normal) == normal
    local, _, domain = address.rpartition("@")
    shouted = f"{local}@{domain.upper()}"
    assert normalize_email(shouted) == normal


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        # The wording differs between email-validator versions; the subject does not.
        ("alice.example.com", "@-sign"),
        ("", "email address is empty"),
        ("   ", "email address is empty"),
        ("al ice@example.com", "invalid characters before the @-sign: SPACE"),
        ("alice@exam ple.com", "after the @-sign contains invalid characters: SPACE"),
        ("alice@example.com\r\nBcc: eve@example.com", "line break"),
        ("alice@example.com\nmallory@example.com", "line break"),
        ("alice\x00@example.com", "NUL"),
        ("a" * 309 + "@example.com", "longer than 320 characters"),
        ("a" * 250 + "@example.com", "too long"),
        ("alice@@example.com", "invalid email address"),
        ("alice@", "There must be something after the @-sign"),
        ("@example.com", "There must be something before the @-sign"),
        ("alice@example", "should have a period"),
        ("alice@localhost", "should have a period"),
        ('"alice"@example.com', "Quoting the part before the @-sign is not allowed"),
    ],
)
def test_invalid_addresses_are_refused_with_the_reason(typed: str, message: str) -> None:
    with pytest.raises(InvalidEmail, match=message) as error:
        normalize_email(typed)

    # One line a command can print as it is
    text = str(error.value)
    assert "\n" not in text and "\r" not in text and "\x00" not in text
    assert isinstance(error.value, InvalidInput)
    # FastAPI Users refuses them too
    with pytest.raises(ValidationError):
        stored_by_fastapi_users(typed)


# Many addresses at once: the import's normaliser must agree with normalize_email ----------------

_PLAIN_EXAMPLES = [
    "Foo.Bar@ExAmple.COM",
    "postmaster@Example.com",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "user+tag@sub.example.co.uk",
    "x@localhost",
    "x@example",
    "x@-bad-.com",
    "x@example.test",
    "o'neil@example.com",
    "ñ@example.com",
    "x@münchen.de",
    '"quoted"@example.com',
    "x@[192.0.2.1]",
    "Name <x@example.com>",
    "  spaced@example.com  ",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "x@" + "a" * 63 + ".com",
    "x@" + "a" * 64 + ".com",
    "x@" + ".".join(["abcdefghij"] * 23) + ".com",
    "two@@example.com",
    "",
]


def _outcome(function: object, raw: str) -> tuple[str, str]:
    try:
        return ("ok", function(raw))  # type: ignore[operator]
    except InvalidEmail as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("raw", _PLAIN_EXAMPLES)
def test_the_bulk_normaliser_agrees_on_examples(raw: str) -> None:
    from usersctl.emails import EmailNormalizer

    assert _outcome(EmailNormalizer(), raw) == _outcome(normalize_email, raw)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.emails(),
        st.builds(
            lambda local, domain: f"{local}@{domain}",
            st.text(alphabet="abcXYZ019.+-_'!#$%&*/=?^`{|}~\\\"(),:;<>[] @\u00e9", max_size=70),
            st.sampled_from(
                ["example.com", "EXAMPLE.com", "ex-ample.org", "localhost", "a.b", "x..y.com"]
            ),
        ),
    )
)
def test_the_bulk_normaliser_agrees_with_normalize_email(raw: str) -> None:
    from usersctl.emails import EmailNormalizer

    assert _outcome(EmailNormalizer(), raw) == _outcome(normalize_email, raw)


# Exact words: a command prints them as they are -----------------------------------------------


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "email address is empty"),
        ("a\nb@example.com", "email address contains a line break or NUL character"),
        ("a" * 309 + "@example.com", "email address is longer than 320 characters"),
        (
            "alice@example",
            "invalid email address 'alice@example': "
            "The part after the @-sign is not valid. It should have a period",
        ),
    ],
)
def test_the_message_is_exactly_this(typed: str, message: str) -> None:
    with pytest.raises(InvalidEmail) as error:
        normalize_email(typed)
    assert str(error.value) == message


def test_the_reason_names_the_problem_without_the_value() -> None:
    with pytest.raises(InvalidEmail) as error:
        normalize_email("secret-password")
    assert error.value.reason == "not a valid email address (An email address must have an @-sign)"
    with pytest.raises(InvalidEmail) as error:
        normalize_email("  ")
    assert error.value.reason == "email address is empty"  # no reason of its own: the message


def test_an_address_of_exactly_320_characters_is_judged_by_email_validator() -> None:
    typed = "a" * 308 + "@example.com"
    assert len(typed) == 320
    with pytest.raises(InvalidEmail, match=r"too long \(66 characters too many\)$"):
        normalize_email(typed)


# The bulk normaliser asks email-validator once per domain of a plain ASCII address -----------

_LONG_DOMAIN = "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"  # 189 characters


@pytest.mark.parametrize(
    ("raw", "cached"),
    [
        ("Foo.Bar@ExAmple.COM", {"ExAmple.COM": "example.com"}),
        ("a" * 64 + "@example.com", {"example.com": "example.com"}),  # the longest local part
        ("a" * 64 + "@" + _LONG_DOMAIN, {_LONG_DOMAIN: _LONG_DOMAIN}),  # 254: the longest
        ("a" * 64 + "@" + _LONG_DOMAIN + "x", {}),  # too long: the canonical path says so
        ("a" * 65 + "@example.com", {}),  # a local part too long
        ("ñ@example.com", {}),
        ("x@münchen.de", {}),
        ("PostMaster@example.com", {}),  # lowercased by email-validator
        ("no-at-sign", {}),
    ],
)
def test_the_bulk_normaliser_remembers_the_domains_of_plain_addresses(
    raw: str, cached: dict[str, str | None]
) -> None:
    from usersctl.emails import EmailNormalizer

    normalizer = EmailNormalizer()
    assert _outcome(normalizer, raw) == _outcome(normalize_email, raw)
    assert normalizer._domains == cached


def test_the_bulk_normaliser_answers_a_known_domain_from_memory() -> None:
    from usersctl.emails import EmailNormalizer

    normalizer = EmailNormalizer()
    assert normalizer("a@Example.COM") == "a@example.com"
    assert normalizer("PostMaster@Example.COM") == "postmaster@example.com"
    normalizer._domains["Example.COM"] = "remembered.example"
    assert normalizer("b@Example.COM") == "b@remembered.example"


# Domains, as --email-domain takes them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("old-corp.net", ("old-corp.net", "old-corp.net")),
        ("  @Bücher.DE ", ("bücher.de", "xn--bcher-kva.de")),
        ("XN--BCHER-KVA.de", ("bücher.de", "xn--bcher-kva.de")),
    ],
)
def test_a_domain_is_normalised_as_in_an_address(typed: str, normal: tuple[str, str]) -> None:
    from usersctl.emails import normalize_domain

    assert normalize_domain(typed) == normal


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "invalid email domain ''"),
        (" @ ", "invalid email domain '@'"),
        ("a@b.com", "invalid email domain 'a@b.com'"),
        ("x\r.com", "invalid email domain 'x\\r.com'"),
        ("x\n.com", "invalid email domain 'x\\n.com'"),
        ("x\x00.com", "invalid email domain 'x\\x00.com'"),
        (
            " example ",
            "invalid email domain 'example': "
            "The part after the @-sign is not valid. It should have a period",
        ),
    ],
)
def test_an_invalid_domain_is_refused_in_these_words(typed: str, message: str) -> None:
    from usersctl.emails import normalize_domain

    with pytest.raises(InvalidEmail) as error:
        normalize_domain(typed)
    assert str(error.value) == message
