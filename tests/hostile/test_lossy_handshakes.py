"""Handshakes through an adversarial network: the relay ``python -m dtls impair``.

The matrix: DTLS 1.2 with (our client <-> our server), (our client -> openssl s_server)
and (openssl s_client -> our server), one suite of each family; DTLS 1.3 (RFC 9147) with
(our client <-> our server), (our client -> wolfSSL's example server) and (wolfSSL's
example client -> our server), in TLS_AES_128_GCM_SHA256. Under 10/20/30 % loss in both
directions, 20 % duplication, reordering, packing, an MTU bound and forgeries. Each cell
must finish its handshake within the deadline (our tool's ``--timeout 30``; OpenSSL's and
wolfSSL's own timers, bounded by the test at 40 s) and then carry one line each way (with
wolfSSL, its fixed lines: see wolfpeers.exchange_with_server/_client).

The cells are independent (own ports, own relay), so the module-scoped ``matrix`` fixture
runs all the selected ones at once in threads (``LOSSY_WORKERS``, default 8), and each
parametrized test asserts on its recorded outcome. Each (condition, pairing, suite) runs
``LOSSY_REPEAT`` times (default 3). Seeds are fixed per cell (``LOSSY_SEED`` picks
another set). ``LOSSY_REPORT=path`` writes the duration table
(markdown) to ``path`` and the raw outcomes to ``path.json``; ``lossy_report.py`` merges
several such files into one table.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hostilekit as hk
import pytest
from hostilekit import PAIRINGS, PAIRINGS13, Cell, Condition, Outcome, peers, wolfssl

pytestmark = pytest.mark.hostile

CONDITIONS = [
    Condition("loss10", ("--drop", "0.1")),
    Condition("loss20", ("--drop", "0.2")),
    Condition("loss30", ("--drop", "0.3")),
    Condition("dup20", ("--dup", "0.2")),
    Condition("reorder", ("--delay", "0.3", "--delay-ms", "300")),
    # Our flights are split at 128 bytes and the relay packs what follows within 50 ms
    # (the pieces of a flight, and duplicates) back into one datagram of several records.
    # Towards wolfSSL's examples without the duplicates: on a datagram that holds one
    # record twice its client stops (no retransmission, no alert, no exit: seen with our
    # HelloRetryRequest) and its server ignores the datagram (seen with our second
    # ClientHello, until a retransmission goes undoubled). Duplicated apart, or packed
    # without copies, they take them. Towards our peers the condition is unchanged.
    Condition(
        "pack",
        ("--pack", "1", "--pack-window", "50", "--dup", "0.5"),
        ours=("--mtu", "128"),
        must_pack=True,
        toward_wolfssl=("--dup", "0"),
    ),
    # A 228-byte path (OpenSSL's -mtu is the link MTU: 256 = 228 + IPv4 and UDP headers):
    # every peer told the MTU stays within it, so the relay drops nothing.
    Condition(
        "mtu228",
        ("--mtu", "228"),
        ours=("--mtu", "228"),
        openssl=("-mtu", "256"),
        no_mtu_drops=True,
        pairings=PAIRINGS,
    ),
    # DTLS 1.3 on a 300-byte path (wolfSSL's -u is its largest datagram). Not 228: our
    # client never fragments a ClientHello (dtls/flight.py) and its second one, with the
    # server's cookie, is 261 bytes against ours and 276 against wolfSSL's; wolfSSL's
    # client refuses -u 228 and, up to -u 256, answers a HelloRetryRequest for X25519
    # without a key share again. Its second ClientHello, with our cookie, comes in two
    # fragments (300 + 36 bytes), which our endpoint puts together before the cookie
    # check (dtls/hellofrags.py).
    Condition(
        "mtu300",
        ("--mtu", "300"),
        ours=("--mtu", "300"),
        wolfssl_mtu=300,
        no_mtu_drops=True,
        pairings=PAIRINGS13,
    ),
    # A forged copy before every application record sent to our peers, and the client's
    # ClientHello replayed after its third datagram (its last flight): neither may break
    # the connection. (Not towards OpenSSL: with encrypt-then-MAC its DTLS treats a
    # record with a bad MAC as fatal, see docs/hostile-network.md. Not towards wolfSSL
    # either: the matrix tests our peers.) DTLS 1.3 records have the unified header, which
    # the relay's --corrupt does not read: those cells run impair13.py, which forges them.
    Condition("forgery", ("--replay-after", "3"), toward_ours=("--corrupt", "1")),
]
CONDITION_NAMES = [c.name for c in CONDITIONS]

SUITES = {
    hk.OURS_OURS: ["00A8", "CCAC", "C037", "C0A8"],
    hk.OURS_S_SERVER: ["00A8", "CCAC", "C037"],
    hk.S_CLIENT_OURS: ["00A8", "CCAC", "C037"],
    # DTLS 1.3: one suite (the others differ only in the AEAD; tests/interop has them all)
    hk.OURS13_OURS13: ["1301"],
    hk.OURS13_WOLFSSL: ["1301"],
    hk.WOLFSSL_OURS13: ["1301"],
}

# At 30 % loss each way a round trip fails half the time, and with RFC 6347's timers
# (1 s, doubling) and a 30 s deadline some loss patterns leave no way to finish: about 9 %
# of 30 %-loss handshakes over 17 other seed sets (docs/hostile-network.md). The default seeds
# (LOSSY_SEED=1) hit three such patterns; each was read in its relay trace and the cell
# takes the next seed (variant 1) instead. The patterns, for the record:
SEED_VARIANTS = {
    # seed 3096850606: ClientHello lost twice (3 s), then ClientKeyExchange..Finished and
    # the answering CCS+Finished lost 5 times out of 7; the next try would be at 34 s.
    "loss30-ours-ours-PSK_WITH_AES_128_GCM_SHA256-2": 1,
    # seed 2469223806: three HelloVerifyRequests and a ClientHello lost (15 s), then
    # ServerHelloDone lost in 4 of s_server's 5 transmissions of its flight.
    "loss30-ours-s_server-ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256-2": 1,
    # seed 3638983451: s_client's ChangeCipherSpec lost in its retransmissions at 2 (where
    # it also came before the lost ClientKeyExchange), 4, 8 and 16 s; then 32 s.
    "loss30-s_client-ours-ECDHE_PSK_WITH_AES_128_CBC_SHA256-1": 1,
    # DTLS 1.3 against wolfSSL's example server, which answers one line once and closes
    # right after: a lost or overtaken answer cannot be made up for (application data is
    # not retransmitted). Read in the traces (at commits 139fb92 and 8ba4283):
    # seed 3713510524: our first line dropped, the answer to the second (0.55 s) too; its
    # close_notify arrived and our client closed.
    "loss20-ours13-wolfssl-AES_128_GCM_SHA256-2": 1,
    # seed 1356812702: our first line dropped, the answer to the second (about 16 s) too.
    "loss30-ours13-wolfssl-AES_128_GCM_SHA256-2": 1,
    # seeds 1823543147 and 588779504: the answer held by the relay, overtaken by the
    # close_notify behind it.
    "reorder-ours13-wolfssl-AES_128_GCM_SHA256-0": 2,
}


def _cell(condition: Condition, pairing: str, hex_id: str, rep: int) -> Cell:
    suite = hk.SUITES13[hex_id] if pairing in PAIRINGS13 else peers.SUITES[hex_id]
    cell = Cell(pairing, suite, condition, hk.seed_base(), rep)
    if hk.seed_base() == "1":
        cell = Cell(pairing, cell.suite, condition, "1", rep, SEED_VARIANTS.get(cell.id, 0))
    return cell


CELLS = [
    _cell(condition, pairing, hex_id, rep)
    for condition in CONDITIONS
    for pairing in PAIRINGS + PAIRINGS13
    if pairing in condition.pairings
    for hex_id in SUITES[pairing]
    for rep in range(hk.repeat())
]


def _param(cell: Cell) -> object:
    marks = [pytest.mark.interop] if cell.peer is not None else []
    return pytest.param(cell, id=cell.id, marks=marks)


def _require_peer(cell: Cell) -> None:
    """Skip the cell when its other implementation is missing (fail: DTLS_REQUIRE_PEERS=1)."""
    if cell.uses_openssl:
        peers.require_peer("openssl")
        peers.require_openssl_suite(cell.suite)
    elif cell.uses_wolfssl:
        wolfssl.require_wolfssl()


def _runnable(cell: Cell) -> bool:
    """Whether the cell can run here (a missing peer is the test's business: skip/fail)."""
    try:
        _require_peer(cell)
    except (pytest.skip.Exception, pytest.fail.Exception):
        return False
    return True


@pytest.fixture(scope="module")
def matrix(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Runs every selected cell, several at once; the outcomes by cell id."""
    selected = {
        item.callspec.params["cell"].id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    cells = [c for c in CELLS if c.id in selected and _runnable(c)]
    root = tmp_path_factory.mktemp("lossy")
    with ThreadPoolExecutor(max_workers=hk.workers()) as pool:
        futures = {c.id: pool.submit(hk.run_cell, c, root / c.id) for c in cells}
        outcomes = {cell_id: f.result() for cell_id, f in futures.items()}
    report = os.environ.get("LOSSY_REPORT")
    if report:
        hk.write_report(Path(report), list(outcomes.values()), CONDITION_NAMES)
    return outcomes


# pytest-timeout counts fixtures: the first of these tests also waits for the whole matrix.
# The 240 DTLS 1.2 cells, 8 at a time, on a 2-CPU machine: 71 s when all pass, 199 s when a
# broken server made 32 of them wait out their 40 s deadline; with the 72 DTLS 1.3 cells
# 122-168 s. So they get 15 s for each round of LOSSY_WORKERS cells on top of the default
# 300 s (885 s by default).
MATRIX_TIMEOUT = 300 + 15 * math.ceil(len(CELLS) / hk.workers())


@pytest.mark.timeout(MATRIX_TIMEOUT)
@pytest.mark.parametrize("cell", [_param(c) for c in CELLS])
def test_lossy_handshake(cell: Cell, matrix: dict[str, Outcome]) -> None:
    _require_peer(cell)
    outcome = matrix[cell.id]
    if not outcome.ok:
        pytest.fail(f"{cell.id} (seed {cell.seed}):\n{outcome.error}", pytrace=False)
    assert outcome.handshake_s is not None
    assert outcome.handshake_s <= hk.HANDSHAKE_DEADLINE, outcome
