"""An SMTP server on a loopback port, for tests of what the app mails (SMTP_URL)."""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: greet, take one or more messages, say goodbye."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 test smtp")
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith("DATA"):
                self.reply("354 go on")
                self.server.messages.append(self.read_data())  # type: ignore[attr-defined]
                self.reply("250 queued")
            elif command.startswith("QUIT"):
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")

    def read_data(self) -> str:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line.decode())
        return "".join(lines)


def start_smtp() -> socketserver.ThreadingTCPServer:
    """The server, serving in a thread; what it takes is appended to `server.messages`."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpHandler)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def read_mail(raw: str) -> tuple[str, str, str]:
    """To, Subject and the text of one message the server took."""
    message = email.message_from_string(raw, policy=email.policy.default)
    return message["To"], message["Subject"], message.get_content()
