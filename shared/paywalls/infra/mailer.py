"""Outgoing email (wallet sign-in codes): Amazon SES in AWS, the console locally.

In AWS the sender is EMAIL_FROM (a verified SES identity, template parameter SenderEmail). On the
local stack (PAYWALLS_LOCAL_DEV=1) nothing is sent: the code is printed to the `make run` console on
purpose (the only place a code is ever logged) and kept in an in-process sink that the dev-only
route /_dev/mail reads, so tests and developers can sign in without a mail server."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from paywalls.core.errors import Unavailable
from paywalls.infra import aws
from paywalls.infra.config import settings

log = logging.getLogger(__name__)

SINK_SIZE = 200


class MailUnavailable(Unavailable):
    """The message could not be sent (no sender configured, SES refused or unreachable). Client-safe."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    sent_at: float


_sink: list[Mail] = []
_sink_lock = threading.Lock()


def sign_in_code_mail(to: str, code: str, minutes: int) -> Mail:
    text = (
        f"Your wallet sign-in code is {code}\n\n"
        f"It expires in {minutes} minutes and works once. If you did not try to sign in, ignore this email."
    )
    return Mail(to, f"Your sign-in code: {code}", text, time.time())


def send(mail: Mail) -> None:
    if settings().local_dev:
        with _sink_lock:
            _sink.append(mail)
            del _sink[:-SINK_SIZE]
        # Deliberate: the local console is the local "inbox". Never reached in AWS (no PAYWALLS_LOCAL_DEV).
        log.warning("LOCAL MAIL to %s: %s", mail.to, mail.subject)
        return
    sender = settings().email_from
    if not sender:
        raise MailUnavailable("email sign-in is not configured for this deployment (no sender address)")
    try:
        aws.client("sesv2").send_email(
            FromEmailAddress=sender,
            Destination={"ToAddresses": [mail.to]},
            Content={
                "Simple": {
                    "Subject": {"Data": mail.subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": mail.text, "Charset": "UTF-8"}},
                }
            },
        )
    except (ClientError, BotoCoreError) as exc:
        code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
        log.warning("sign-in email not sent", extra={"ses_error": code})
        raise MailUnavailable("the sign-in email could not be sent; please try again later") from None


def sent_mail(to: str | None = None) -> list[Mail]:
    """Local sink, newest last (dev route and tests only)."""
    with _sink_lock:
        return [m for m in _sink if to is None or m.to == to]
