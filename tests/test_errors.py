"""The exception hierarchy: code and stage mapping, smtplib compatibility, pickling, messages."""

from __future__ import annotations

import copy
import pickle
import smtplib
import ssl
from typing import Any

import pytest

from smtp_resilience import errors
from smtp_resilience.engine import mapping
from smtp_resilience.engine.mapping import (
    ambiguous_delivery,
    connection_failed,
    error_for,
    error_from_smtplib,
    is_transient,
)
from smtp_resilience.errors import (
    AccessDenied,
    AmbiguousDeliveryError,
    AuthenticationFailed,
    BadCommandSequence,
    CommandNotImplemented,
    CommandSyntaxError,
    ConnectionFailed,
    DoesNotAcceptMail,
    InsufficientStorage,
    LocalErrorInProcessing,
    MailboxBusy,
    MailboxNameNotAllowed,
    MailboxUnavailable,
    ParameterNotImplemented,
    ParameterSyntaxError,
    PermanentSMTPError,
    ProtocolError,
    ServiceNotAvailable,
    SMTPResilienceError,
    StorageAllocationExceeded,
    TLSDowngradeRefused,
    TransactionFailed,
    TransientSMTPError,
    UserNotLocal,
)
from smtp_resilience.replies.classification import classify
from smtp_resilience.replies.codes import Command
from smtp_resilience.report import Attempt, DeliveryReport, Outcome, RecipientOutcome

# Written out here, not read from the module, so a wrong entry in the module's table fails.
EXPECTED_CLASS_FOR_CODE: dict[int, type[SMTPResilienceError]] = {
    421: ServiceNotAvailable,
    450: MailboxBusy,
    451: LocalErrorInProcessing,
    452: InsufficientStorage,
    500: CommandSyntaxError,
    501: ParameterSyntaxError,
    502: CommandNotImplemented,
    503: BadCommandSequence,
    504: ParameterNotImplemented,
    521: DoesNotAcceptMail,
    530: AccessDenied,
    535: AuthenticationFailed,
    550: MailboxUnavailable,
    551: UserNotLocal,
    552: StorageAllocationExceeded,
    553: MailboxNameNotAllowed,
    554: TransactionFailed,
}

# The class smtplib itself raises for an error reply at each stage.
EXPECTED_SMTPLIB_CLASS_FOR_STAGE: dict[Command | None, type[smtplib.SMTPException]] = {
    Command.GREETING: smtplib.SMTPConnectError,
    Command.HELO: smtplib.SMTPHeloError,
    Command.EHLO: smtplib.SMTPHeloError,
    Command.MAIL: smtplib.SMTPSenderRefused,
    Command.RCPT: smtplib.SMTPRecipientsRefused,
    Command.DATA: smtplib.SMTPDataError,
    Command.END_OF_DATA: smtplib.SMTPDataError,
    Command.AUTH: smtplib.SMTPAuthenticationError,
    Command.STARTTLS: smtplib.SMTPResponseException,
    Command.RSET: smtplib.SMTPResponseException,
    None: smtplib.SMTPResponseException,
}

CODES = [*sorted(EXPECTED_CLASS_FOR_CODE), 499, 599, 458, 571]
STAGES = list(EXPECTED_SMTPLIB_CLASS_FOR_STAGE)
TEXT = "5.0.0 the server's words"
RECIPIENTS = {"a@example.com": (550, b"5.1.1 no such user")}


def make(code: int, stage: Command | None, **kwargs: Any) -> SMTPResilienceError:
    recipients = {"a@example.com": (code, TEXT.encode())} if stage is Command.RCPT else None
    sender = "sender@example.com" if stage is Command.MAIL else None
    return error_for(code, TEXT, stage, recipients, sender=sender, **kwargs)


def expected_base(code: int) -> type[SMTPResilienceError]:
    return TransientSMTPError if code < 500 else PermanentSMTPError


@pytest.mark.parametrize(("code", "error_class"), EXPECTED_CLASS_FOR_CODE.items())
def test_each_code_maps_to_its_class(code: int, error_class: type[SMTPResilienceError]) -> None:
    error = error_for(code, TEXT)
    assert type(error) is error_class
    assert mapping.CLASS_FOR_CODE[code] is error_class
    assert isinstance(error, expected_base(code))
    assert error.code == code


def test_code_table_has_exactly_the_listed_codes() -> None:
    assert dict(mapping.CLASS_FOR_CODE) == EXPECTED_CLASS_FOR_CODE


@pytest.mark.parametrize("code", [499, 458, 454, 599, 571, 556])
def test_unknown_codes_map_to_the_transient_or_permanent_base(code: int) -> None:
    error = error_for(code, "whatever")
    assert isinstance(error, expected_base(code))
    assert isinstance(error, smtplib.SMTPResponseException)
    assert not isinstance(error, tuple(EXPECTED_CLASS_FOR_CODE.values()))
    assert error.code == code


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", CODES)
def test_every_code_is_caught_by_every_smtplib_ancestor_at_every_stage(
    code: int, stage: Command | None
) -> None:
    error = make(code, stage)
    expected = EXPECTED_CLASS_FOR_CODE.get(code, expected_base(code))
    for ancestor in (
        expected,
        expected_base(code),
        SMTPResilienceError,
        EXPECTED_SMTPLIB_CLASS_FOR_STAGE[stage],
        smtplib.SMTPResponseException,
        smtplib.SMTPException,
        OSError,
    ):
        with pytest.raises(ancestor):
            raise error
    assert error.command is stage


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", CODES)
def test_smtp_code_smtp_error_and_args_are_what_smtplib_sets(
    code: int, stage: Command | None
) -> None:
    error = make(code, stage)
    assert isinstance(error, smtplib.SMTPResponseException)
    assert error.smtp_code == code
    assert error.smtp_error == TEXT.encode()
    smtplib_class = EXPECTED_SMTPLIB_CLASS_FOR_STAGE[stage]
    if smtplib_class is smtplib.SMTPRecipientsRefused:
        original: smtplib.SMTPException = smtplib.SMTPRecipientsRefused(error.recipients)
    elif smtplib_class is smtplib.SMTPSenderRefused:
        original = smtplib.SMTPSenderRefused(code, TEXT.encode(), "sender@example.com")
    else:
        original = smtplib_class(code, TEXT.encode())
    assert error.args == original.args


def test_bytes_reply_text_is_kept_byte_for_byte_in_smtp_error() -> None:
    raw = b"5.1.1 caf\xe9 is not here"  # not UTF-8: smtplib hands over whatever came on the wire
    error = error_for(550, raw, "MAIL", sender="s@example.com")
    assert isinstance(error, smtplib.SMTPSenderRefused)
    assert error.smtp_error == raw
    assert error.sender == "s@example.com"
    assert "\ufffd" in error.text


def test_rcpt_stage_carries_the_recipients_dict_as_smtplib_does() -> None:
    error = error_for(550, "5.1.1 no such user", "RCPT", RECIPIENTS)
    assert isinstance(error, smtplib.SMTPRecipientsRefused)
    assert error.recipients == RECIPIENTS
    assert error.args == (RECIPIENTS,)
    for clause in (
        MailboxUnavailable,
        PermanentSMTPError,
        smtplib.SMTPRecipientsRefused,
        smtplib.SMTPResponseException,
    ):
        with pytest.raises(clause):
            raise error


def test_combined_classes_are_cached_and_named_readably() -> None:
    first = error_for(550, "x", "RCPT", RECIPIENTS)
    second = error_for(550, "y", Command.RCPT, RECIPIENTS)
    assert type(first) is type(second)
    assert type(first).__module__ == "smtp_resilience.errors"
    assert type(first).__name__ == "MailboxUnavailable[SMTPRecipientsRefused]"
    assert type(first).__qualname__ == type(first).__name__
    assert type(error_for(550, "x", "MAIL")) is not type(first)


def attributes(error: SMTPResilienceError) -> dict[str, Any]:
    names = ["code", "text", "enhanced_status", "command", "recipients", "sender", "explanation"]
    names += ["attempts", "history", "retry_after", "report", "args"]
    if isinstance(error, smtplib.SMTPResponseException):
        names += ["smtp_code", "smtp_error"]
    return {name: getattr(error, name) for name in names}


HISTORY = (
    Attempt(1, 451, "4.7.1 greylisted", Command.RCPT, 2.0),
    Attempt(2, None, "connection reset", Command.DATA, 4.0),
)
REPORT = DeliveryReport(
    message_id="<id@example.com>",
    sender="sender@example.com",
    recipients=(RecipientOutcome("a@example.com", Outcome.DEFERRED, 451, "4.7.1 greylisted"),),
    attempts=3,
    history=HISTORY,
)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", CODES)
def test_pickle_round_trip_keeps_type_attributes_and_message(
    code: int, stage: Command | None
) -> None:
    error = make(code, stage, attempts=3, history=HISTORY, retry_after=30.0)
    error.report = REPORT
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is type(error)
    assert attributes(restored) == attributes(error)
    assert str(restored) == str(error)
    with pytest.raises(EXPECTED_SMTPLIB_CLASS_FOR_STAGE[stage]):
        raise restored


@pytest.mark.parametrize(
    "error",
    [
        connection_failed("connection refused", "EHLO", attempts=2, history=HISTORY),
        ambiguous_delivery(TimeoutError("timed out"), recipients=RECIPIENTS),
        TLSDowngradeRefused(command="STARTTLS"),
        error_for(None, "garbage", "DATA"),
        error_from_smtplib(smtplib.SMTPNotSupportedError("SMTPUTF8 not supported")),
    ],
    ids=["connection", "ambiguous", "tls", "protocol", "not-supported"],
)
def test_uncoded_errors_survive_pickle_and_copy(error: SMTPResilienceError) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error)
        assert attributes(clone) == attributes(error)
        assert str(clone) == str(error)


def test_copy_of_a_combined_class_keeps_its_type() -> None:
    error = error_for(550, "5.1.1 no such user", "RCPT", RECIPIENTS, attempts=4)
    clone = copy.copy(error)
    assert type(clone) is type(error)
    assert attributes(clone) == attributes(error)


SMTPLIB_EXCEPTIONS: list[
    tuple[smtplib.SMTPException, type[SMTPResilienceError], Command | None]
] = [
    (smtplib.SMTPRecipientsRefused(dict(RECIPIENTS)), MailboxUnavailable, Command.RCPT),
    (
        smtplib.SMTPSenderRefused(553, b"5.1.3 bad sender", "x@"),
        MailboxNameNotAllowed,
        Command.MAIL,
    ),
    (smtplib.SMTPDataError(554, b"5.7.1 spam"), TransactionFailed, Command.DATA),
    (
        smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"),
        AuthenticationFailed,
        Command.AUTH,
    ),
    (smtplib.SMTPConnectError(421, b"4.3.2 too busy"), ServiceNotAvailable, Command.GREETING),
    (smtplib.SMTPHeloError(501, b"5.5.4 bad hostname"), ParameterSyntaxError, Command.EHLO),
    (smtplib.SMTPResponseException(530, b"5.7.0 STARTTLS first"), AccessDenied, None),
    (smtplib.SMTPResponseException(-1, b"garbage"), ProtocolError, None),
    (smtplib.SMTPHeloError(-1, b"garbage"), ProtocolError, Command.EHLO),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), ConnectionFailed, None),
]


@pytest.mark.parametrize(("original", "error_class", "stage"), SMTPLIB_EXCEPTIONS)
def test_error_from_smtplib_maps_each_smtplib_exception(
    original: smtplib.SMTPException, error_class: type[SMTPResilienceError], stage: Command | None
) -> None:
    error = error_from_smtplib(original)
    assert isinstance(error, error_class)
    assert isinstance(error, type(original))  # existing except clauses still catch it
    assert error.command is stage
    if isinstance(original, smtplib.SMTPResponseException):
        assert isinstance(error, smtplib.SMTPResponseException)
        assert (error.smtp_code, error.smtp_error) == (original.smtp_code, original.smtp_error)
    if isinstance(original, smtplib.SMTPSenderRefused):
        assert error.sender == original.sender


def test_error_from_smtplib_returns_ours_unchanged_and_honours_the_given_stage() -> None:
    ours = error_for(451, "4.3.0 try later", "MAIL")
    assert error_from_smtplib(ours) is ours
    error = error_from_smtplib(smtplib.SMTPDataError(451, b"4.3.0 later"), "end of data")
    assert error.command is Command.END_OF_DATA
    assert isinstance(error, LocalErrorInProcessing)


def test_error_from_smtplib_reports_a_transient_refusal_when_one_recipient_may_succeed() -> None:
    refusals = {"a@x": (550, b"5.1.1 gone"), "b@x": (450, b"4.2.1 slow down")}
    error = error_from_smtplib(smtplib.SMTPRecipientsRefused(refusals))
    assert isinstance(error, MailboxBusy)
    assert error.recipients == refusals
    all_permanent = {"a@x": (553, b"5.1.3 bad"), "b@x": (550, b"5.1.1 gone")}
    assert isinstance(
        error_from_smtplib(smtplib.SMTPRecipientsRefused(all_permanent)), MailboxNameNotAllowed
    )


def test_disconnect_after_the_final_dot_is_ambiguous() -> None:
    error = error_from_smtplib(smtplib.SMTPServerDisconnected("gone"), Command.END_OF_DATA)
    assert isinstance(error, AmbiguousDeliveryError)
    assert isinstance(error, smtplib.SMTPServerDisconnected)
    assert not is_transient(error)


def test_unmapped_smtplib_exception_keeps_its_class() -> None:
    error = error_from_smtplib(smtplib.SMTPNotSupportedError("SMTPUTF8 not supported"))
    assert isinstance(error, smtplib.SMTPNotSupportedError)
    assert isinstance(error, SMTPResilienceError)
    assert "SMTPUTF8 not supported" in str(error)


@pytest.mark.parametrize("code", [None, -1, 250, 354, 999])
def test_replies_without_an_error_code_are_protocol_errors(code: int | None) -> None:
    error = error_for(code, "what was that", "DATA")
    assert isinstance(error, ProtocolError)
    assert isinstance(error, smtplib.SMTPDataError)
    assert error.smtp_code == (-1 if code is None else code)
    assert error.code == (code if code in (250, 354) else None)
    assert not is_transient(error)
    assert "what was that" in str(error)


def test_connection_failed_is_transient_and_a_disconnect_but_not_a_response() -> None:
    error = connection_failed(ConnectionRefusedError(111, "Connection refused"), "connect")
    assert isinstance(error, TransientSMTPError)
    assert isinstance(error, smtplib.SMTPServerDisconnected)
    assert not isinstance(error, smtplib.SMTPResponseException)
    assert error.code is None
    assert error.command is Command.GREETING
    assert "Connection refused" in str(error)
    assert is_transient(error)


def test_tls_downgrade_refused_is_caught_as_smtplib_not_supported() -> None:
    with pytest.raises(smtplib.SMTPNotSupportedError):
        raise TLSDowngradeRefused(command="STARTTLS")
    assert "TLS" in str(TLSDowngradeRefused())


def test_str_is_the_explanation_with_recipients_on_one_line() -> None:
    error = error_for(550, "5.1.1 no such user", "RCPT", {"a@x": (550, b"5.1.1 no such user")})
    assert str(error) == f"{error.explanation} [recipients: a@x]"
    assert str(error).startswith("550 5.1.1 (RCPT): ")
    assert "\n" not in str(error)


def test_str_says_how_many_attempts_were_made() -> None:
    error = error_for(451, "4.3.0 try later", "MAIL", attempts=5)
    assert str(error).endswith("(gave up after 5 attempts)")
    assert "attempts" not in str(error_for(451, "4.3.0 try later", "MAIL"))


def test_str_stays_on_one_line_for_multiline_replies_and_many_recipients() -> None:
    recipients = {f"user{n}@x": (550, b"5.1.1 no") for n in range(8)}
    error = error_for(550, "5.1.1 first line\n5.1.1 second line", "RCPT", recipients)
    assert "\n" not in str(error)
    assert "and 3 more]" in str(error)
    assert "user7@x" not in str(error)


def test_str_uses_the_explanation_of_the_verdict_given() -> None:
    verdict = classify(550, "5.7.1 relay denied", "RCPT")
    explanation = verdict.explanation
    error = error_for(550, "ignored for the message", "RCPT", verdict=verdict)
    assert error.explanation is explanation
    assert str(error) == str(explanation)
    assert error.enhanced_status == explanation.enhanced_status


def test_enhanced_status_is_parsed_from_the_reply() -> None:
    error = error_for(552, "5.3.4 message too big", "end of data")
    assert str(error.enhanced_status) == "5.3.4"
    assert error_for(552, "no enhanced code here").enhanced_status is None


def test_auth_errors_carry_only_the_servers_reply() -> None:
    error = error_for(535, b"5.7.8 Username and Password not accepted", "AUTH")
    assert isinstance(error, smtplib.SMTPAuthenticationError)
    assert error.args == (535, b"5.7.8 Username and Password not accepted")
    assert set(vars(error)) >= {"code", "text", "explanation"}
    assert not {"user", "password", "credentials"} & set(vars(error))


def test_unknown_command_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="FROB"):
        error_for(550, "x", "FROB")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (error_for(450, "4.2.0 greylisted", "RCPT"), True),
        (error_for(550, "5.1.1 gone", "RCPT"), False),
        (smtplib.SMTPDataError(451, b"4.3.0 later"), True),
        (smtplib.SMTPDataError(554, b"5.7.1 no"), False),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (ConnectionResetError(104, "reset"), True),
        (ssl.SSLCertVerificationError("bad certificate"), False),
        (ValueError("not a network problem"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_every_public_error_class_is_an_smtplib_exception() -> None:
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type):
            assert issubclass(value, smtplib.SMTPException), name
    assert issubclass(ConnectionFailed, smtplib.SMTPServerDisconnected)
    assert issubclass(ProtocolError, smtplib.SMTPResponseException)
