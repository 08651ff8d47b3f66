"""``python -m dtls`` (dtls/aio/tool) in-process: addresses, session files, stdin, and the
server's tally of connections and failed handshakes over loopback. The command line as a
process, against OpenSSL, GnuTLS and pion, is tested in tests/interop."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import anyio
import pytest

import dtls.aio
from dtls.aio.tool import main
from dtls.aio.tool.console import StdinLines, split_record
from dtls.aio.tool.options import UsageError, build_config, make_parser, parse_hostport
from dtls.aio.tool.server import Server
from dtls.aio.tool.sessionfile import load_session, save_session
from dtls.constants import MAX_PLAINTEXT
from dtls.session import SessionState, Ticket13
from dtls.suites import SUITES_BY_CODE

KEY = "000102030405060708090a0b0c0d0e0f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:4433", ("127.0.0.1", 4433)),
        ("[::1]:4433", ("::1", 4433)),
        ("::1:4433", ("::1", 4433)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["nowhere", "h:", ":1", "h:0", "h:65536", "h:1x", "h:\u00b2"])
def test_bad_hostport(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport(text)
    assert parse_hostport("h:0", port_zero=True) == ("h", 0)


def test_session_file_round_trip(tmp_path: Path) -> None:
    session = SessionState(
        session_id=bytes(range(32)),
        cipher_suite=SUITES_BY_CODE[0x00A8],
        master=bytes(range(48)),
        extended_master_secret=True,
        encrypt_then_mac=False,
        psk_identity=b"Client_identity",
    )
    path = tmp_path / "s.sess"
    save_session(str(path), session)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the master secret
    assert load_session(str(path)) == session
    assert [p.name for p in tmp_path.iterdir()] == ["s.sess"]  # no temporary file left
    path.unlink()
    path.write_text("{}")
    path.chmod(0o644)
    with pytest.raises(UsageError, match="has mode 0644"):  # it holds a secret
        load_session(str(path))
    path.chmod(0o600)
    with pytest.raises(UsageError, match="not a session file: 'format'"):
        load_session(str(path))


def test_ticket_file_round_trip(tmp_path: Path) -> None:
    """A DTLS 1.3 ticket: its monotonic receipt time is kept across processes as Unix
    time (to the millisecond)."""
    ticket = Ticket13(
        ticket=bytes(range(174)),
        hash_name="sha384",
        psk=bytes(range(48)),
        age_add=0xFFFFFFFF,
        lifetime=300,
        received=time.monotonic() - 12.5,
        psk_identity=b"Client_identity",
    )
    path = tmp_path / "t.sess"
    save_session(str(path), ticket)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the PSK
    back = load_session(str(path))
    assert isinstance(back, Ticket13)
    assert back.psk == ticket.psk and back.ticket == ticket.ticket
    assert abs(back.received - ticket.received) < 0.1
    assert (
        abs(back.obfuscated_age(time.monotonic()) - ticket.obfuscated_age(time.monotonic())) < 100
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("psk", "00" * 32, "'psk' must be 48 bytes"),
        ("hash", "md5", "'hash' must be"),
        ("lifetime", 604801, "'lifetime'"),
        ("age_add", -1, "'age_add'"),
        ("ticket", "", "'ticket' must be"),
        ("received", "yesterday", "'received'"),
    ],
)
def test_ticket_file_fields_are_checked(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    fields = {
        "format": "python-dtls-ticket13-1",
        "ticket": "01",
        "hash": "sha384",
        "psk": "00" * 48,
        "age_add": 0,
        "lifetime": 60,
        "received": 0,
        "psk_identity": "",
        field: value,
    }
    path = tmp_path / "t.sess"
    path.write_text(json.dumps(fields))
    path.chmod(0o600)
    with pytest.raises(UsageError, match=message):
        load_session(str(path))


def test_a_session_file_is_not_read_through_a_symbolic_link(tmp_path: Path) -> None:
    real = tmp_path / "real.sess"
    real.write_text("{}")
    real.chmod(0o600)
    link = tmp_path / "link.sess"
    link.symlink_to(real)
    with pytest.raises(UsageError, match="cannot read"):
        load_session(str(link))
    with pytest.raises(UsageError, match="not a regular file"):
        load_session(str(tmp_path))


def test_stdin_lines_from_a_pipe() -> None:
    read_end, write_end = os.pipe()
    long_line = b"x" * (MAX_PLAINTEXT + 10) + b"\n"
    os.write(write_end, b"one\ntw")
    got: list[list[bytes]] = []

    async def reading() -> None:
        stdin = StdinLines(read_end)
        got.append(await stdin.read())
        os.write(write_end, b"o\n" + long_line + b"last")
        os.close(write_end)
        while not stdin.eof:
            got.append(await stdin.read())

    try:
        anyio.run(reading)
    finally:
        os.close(read_end)
    records = [r for batch in got for r in batch]
    assert got[0] == [b"one\n"]
    assert records == [b"one\n", b"two\n", b"x" * MAX_PLAINTEXT, b"x" * 10 + b"\n", b"last"]
    assert split_record(b"") == [b""]


@pytest.mark.parametrize("kind", ["file", "devnull", "closed"])
def test_stdin_lines_that_cannot_be_polled(tmp_path: Path, kind: str) -> None:
    """A regular file is read as it is (epoll refuses it, and it never blocks); /dev/null
    and a closed stdin are empty."""
    path = tmp_path / "in.txt"
    path.write_bytes(b"a\nb\n")
    fd = {"file": lambda: os.open(path, os.O_RDONLY), "devnull": lambda: os.open(os.devnull, 0)}
    descriptor = fd[kind]() if kind in fd else -1
    records: list[bytes] = []

    async def reading() -> None:
        stdin = StdinLines(descriptor)
        with anyio.fail_after(5):
            while not stdin.eof:
                records.extend(await stdin.read())

    try:
        anyio.run(reading)
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    assert records == ([b"a\n", b"b\n"] if kind == "file" else [])


def _server_config(*options: str) -> dtls.DTLSConfiguration:
    args = make_parser().parse_args(["server", "--accept", "127.0.0.1:1", "--psk", KEY, *options])
    return build_config(args, is_client=False)


def _serve_one(client_key: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``server --once --timeout 1`` and one client with ``client_key``: the server's exit
    status and its stderr lines."""
    status: list[int] = []

    async def scene() -> None:
        listener = await dtls.aio.create_server(
            ("127.0.0.1", 0), config=_server_config("--timeout", "1")
        )
        port = listener.address[1]
        server = Server(1, None, echo=False)
        async with anyio.create_task_group() as tg:

            async def serving() -> None:
                status.append(await server.serve(listener))

            tg.start_soon(serving)
            with anyio.fail_after(10):
                try:
                    stream = await dtls.aio.connect(
                        "127.0.0.1", port, psk=bytes.fromhex(client_key), handshake_timeout=1
                    )
                except dtls.aio.HandshakeError:
                    pass
                else:
                    async with stream:
                        await stream.send(b"hello\n")
                        await anyio.sleep(0.2)
                while not status:
                    await anyio.sleep(0.01)

    anyio.run(scene)
    return status[0], capsys.readouterr().err.splitlines()


def test_server_once_counts_an_orderly_close(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _serve_one(KEY, capsys)
    assert status == 0, lines
    assert lines[0].startswith("handshake ok: ") and lines[1:] == [
        "session: none",
        "connection closed: peer closed",
    ]


def test_server_once_counts_a_failed_handshake(capsys: pytest.CaptureFixture[str]) -> None:
    """dtls.aio's listener tells of failed handshakes only in its log; the server takes
    them from there, prints the engine's reason and counts the failure (exit 1)."""
    status, lines = _serve_one("0f" * 16, capsys)
    assert status == 1, lines
    assert len(lines) == 1 and lines[0].startswith("handshake failed: handshake timed out")
    assert "failed authentication (wrong PSK?)" in lines[0]


def test_impair_is_dispatched(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["impair", "--listen", "127.0.0.1:0"])
    assert exc.value.code == 2
    assert "usage: python -m dtls impair " in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["client", "--connect", "nowhere", "--psk", KEY]) == 2
    assert capsys.readouterr().err == (
        "python -m dtls: bad address 'nowhere': expected HOST:PORT or [IPv6]:PORT\n"
    )
    assert main(["server", "--accept", "127.0.0.1:1", "--psk", "xyz"]) == 2
    assert "--psk must be hex" in capsys.readouterr().err
