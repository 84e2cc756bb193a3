"""A scriptable SMTP server for paywatch's email tests, built on aiosmtpd.

It accepts mail on 127.0.0.1:PORT and appends one JSON line per accepted message to RECORD
(envelope, headers, and the decoded text of every MIME part), so a test can read exactly what a
mail client would see. Scripted failures:

  --reject ADDR       answer RCPT TO:<ADDR> with "550 5.1.1 <ADDR>: mailbox unavailable"
  --tempfail ADDR=N   answer RCPT TO:<ADDR> with "451 4.3.0 try again later" N times, then accept
  --auth USER:PASS    require AUTH (PLAIN or LOGIN, allowed without TLS) with these credentials

Prints "ready PORT" once it accepts connections, then runs until killed. Run by
tests/tests/notify_email.rs with the interpreter in .paywatch/venv (scripts/ensure-test-tools.sh
installs it).
"""

import argparse
import email
import email.policy
import json
import logging
import signal
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, record, reject, tempfail):
        self.record = record
        self.reject = reject
        self.tempfail = tempfail
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        with self.lock:
            left = self.tempfail.get(address, 0)
            if left > 0:
                self.tempfail[address] = left - 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = []
        for part in message.walk():
            if part.is_multipart():
                continue
            parts.append({"content_type": part.get_content_type(), "body": part.get_content()})
        entry = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "content_type": message.get_content_type(),
            "headers": {name.lower(): str(value) for name, value in message.items()},
            "parts": parts,
        }
        # One write per message, so a reader never sees half a line from a finished message.
        with self.lock, open(self.record, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
        return "250 2.0.0 OK: queued"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # handled=False: aiosmtpd then answers "535 5.7.8 Authentication credentials invalid"
        # itself (its default, handled=True, would leave the client waiting for a reply).
        return AuthResult(success=ok, handled=False)

    return check


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--tempfail", action="append", default=[])
    parser.add_argument("--auth")
    args = parser.parse_args()
    # AUTH without TLS is deliberate here (no certificates in tests); aiosmtpd warns about it,
    # and about its own deprecated internals, on every connection.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    tempfail = {}
    for spec in args.tempfail:
        address, _, count = spec.rpartition("=")
        tempfail[address] = int(count)
    handler = Handler(args.record, set(args.reject), tempfail)

    smtp_options = {}
    if args.auth:
        user, _, password = args.auth.partition(":")
        smtp_options = {
            "authenticator": authenticator(user, password),
            "auth_required": True,
            # Local tests have no certificates; the client sends AUTH in the clear.
            "auth_require_tls": False,
        }
    controller = Controller(handler, hostname="127.0.0.1", port=args.port, **smtp_options)
    controller.start()
    # The test waits for this line: proof that this process, not some other, owns the port.
    print(f"ready {args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
