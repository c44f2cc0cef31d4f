"""A real SMTP server for the email notification tests (aiosmtpd).

Usage: smtp_sink.py PORT. Prints one JSON line per message it accepts
(envelope, headers, the plain-text and HTML parts, decoded), and refuses
with 550 any recipient whose address starts with "reject". Runs until its
standard input closes.
"""

import email
import json
import sys
from email import policy

from aiosmtpd.controller import Controller


class Sink:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        print(
            json.dumps(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "from": str(msg["from"]),
                    "to": str(msg["to"]),
                    "subject": str(msg["subject"]),
                    "message_id": str(msg["message-id"]),
                    "text": text.get_content() if text else None,
                    "html": html.get_content() if html else None,
                }
            ),
            flush=True,
        )
        return "250 OK: queued"


def main():
    port = int(sys.argv[1])
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print(json.dumps({"listening": port}), flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
