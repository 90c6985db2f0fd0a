"""The fault suite: real containers, real restic, the stand-ins, a real SMTP server. Each scenario
breaks one thing and checks what a user would: the exit code, the history, the alert mail (once),
the other sources and destinations, the repositories, and that no secret reached the output."""

import email
import socket

import pytest
from aiosmtpd.controller import Controller

from tests.integration.conftest import engine, settings, testcontainers_env  # noqa: F401 (shared fixtures)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


class Mailbox:
    def __init__(self):
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode(errors="replace"))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [" ".join(str(email.message_from_string(message)["Subject"]).split()) for message in self.messages]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp():
    """A plain SMTP server on loopback that keeps every mail."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    if controller._thread is not None:  # a scenario may have stopped it (the mail server was down)
        controller.stop()
