"""dtlspipe.allowedips: the complement of some addresses as a WireGuard AllowedIPs list.

Property tests draw exclusions and bases of both IP versions and check the result against
the definition (no excluded address in it, every other base address in it, minimal);
the CLI is run through ``main()`` with captured output.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtlspipe.allowedips import allowed_ips, main

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(version: int, min_prefix: int = 0) -> st.SearchStrategy[Net]:
    bits = 32 if version == 4 else 128
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    return st.builds(
        lambda value, prefix: cls((value, prefix), strict=False),
        st.integers(0, 2**bits - 1),
        st.integers(min_prefix, bits),
    )


any_network = st.one_of(networks(4), networks(6))
#: exclusions: mostly hosts and long prefixes, as a real server address list is
exclusions = st.lists(st.one_of(networks(4, 8), networks(6, 16)), min_size=1, max_size=6)


def addresses_in(draw: Callable[[st.SearchStrategy[int]], int], net: Net, n: int) -> list[Addr]:
    """``n`` random addresses of ``net``."""
    first, size = int(net.network_address), net.num_addresses
    offsets = [draw(st.integers(0, size - 1)) for _ in range(n)]
    return [type(net.network_address)(first + o) for o in offsets]


def parse(result: list[str]) -> list[Net]:
    return [ipaddress.ip_network(s) for s in result]


def inside(addr: Addr, nets: list[Net]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


@st.composite
def case(draw: st.DrawFn) -> tuple[list[Net], list[Net]]:
    """(bases, exclusions), each exclusion overlapping some base."""
    excluded = draw(exclusions)
    bases = draw(st.lists(any_network, max_size=3))
    # every exclusion needs a base of its family that meets it: widen one of its own
    for out in excluded:
        if not any(out.version == b.version and out.overlaps(b) for b in bases):
            bases.append(out.supernet(new_prefix=draw(st.integers(0, out.prefixlen))))
    return bases, excluded


@settings(max_examples=300)
@given(case(), st.data())
def test_no_excluded_address_and_every_other_address(
    c: tuple[list[Net], list[Net]], data: st.DataObject
) -> None:
    bases, excluded = c
    result = parse(allowed_ips([str(e) for e in excluded], base=[str(b) for b in bases]))
    # (a) no excluded address: the edges and random inner addresses of each exclusion
    for out in excluded:
        for addr in [out.network_address, out.broadcast_address,
                     *addresses_in(data.draw, out, 5)]:  # fmt: skip
            assert not inside(addr, result), (addr, out)
    # (b) every base address that is not excluded
    for b in bases:
        for addr in [b.network_address, b.broadcast_address, *addresses_in(data.draw, b, 20)]:
            assert inside(addr, result) == (not inside(addr, excluded)), addr
    # nothing outside the bases either
    for net in result:
        assert inside(net.network_address, bases) and inside(net.broadcast_address, bases)


@given(case())
def test_disjoint_and_collapsed(c: tuple[list[Net], list[Net]]) -> None:
    bases, excluded = c
    result = parse(allowed_ips([str(e) for e in excluded], base=[str(b) for b in bases]))
    for i, x in enumerate(result):
        for y in result[i + 1 :]:
            assert x.version != y.version or not x.overlaps(y), (x, y)
    v4 = [n for n in result if n.version == 4]
    v6 = [n for n in result if n.version == 6]
    assert result == v4 + v6  # IPv4 first
    assert v4 == list(ipaddress.collapse_addresses(v4))
    assert v6 == list(ipaddress.collapse_addresses(v6))


@given(st.one_of(networks(4), networks(6)))
def test_address_count_adds_up(out: Net) -> None:
    """With the default base the result holds exactly 2^bits - |out| addresses of its
    version, and the whole of the other version."""
    result = parse(allowed_ips([str(out)]))
    bits = 32 if out.version == 4 else 128
    same = sum(n.num_addresses for n in result if n.version == out.version)
    assert same == 2**bits - out.num_addresses
    assert sum(1 for n in result if n.version == out.version) == out.prefixlen
    assert ipaddress.ip_network("::/0" if out.version == 4 else "0.0.0.0/0") in result


def test_server_address_gives_32_networks() -> None:
    result = allowed_ips(["203.0.113.7"], base=["0.0.0.0/0"])
    assert len(result) == 32
    assert "203.0.113.7/32" not in result
    assert "203.0.113.6/32" in result and "203.0.113.8/29" in result
    assert result[0] == "0.0.0.0/1" and result[-1] == "224.0.0.0/3"
    assert allowed_ips(["203.0.113.7"]) == [*result, "::/0"]


def test_host_address_is_a_single_host() -> None:
    assert allowed_ips(["203.0.113.7"]) == allowed_ips(["203.0.113.7/32"])
    assert allowed_ips(["2001:db8::7"]) == allowed_ips(["2001:db8::7/128"])


def test_examples() -> None:
    assert allowed_ips(["10.0.0.0/9"], base=["10.0.0.0/8"]) == ["10.128.0.0/9"]
    assert allowed_ips(["0.0.0.0/1"], base=["0.0.0.0/0"]) == ["128.0.0.0/1"]
    # an exclusion wider than a base removes it; overlapping bases are merged
    assert allowed_ips(["10.0.0.0/8"], base=["10.1.0.0/16", "192.0.2.0/24"]) == ["192.0.2.0/24"]
    assert allowed_ips(["192.0.2.1"], base=["192.0.2.0/30", "192.0.2.0/24"]) == allowed_ips(
        ["192.0.2.1"], base=["192.0.2.0/24"]
    )
    # two exclusions next to each other leave no gap between them
    assert allowed_ips(["192.0.2.0/25", "192.0.2.128/25"], base=["192.0.2.0/23"]) == [
        "192.0.3.0/24"
    ]
    assert allowed_ips(["::/1"], base=["::/0"]) == ["8000::/1"]


@pytest.mark.parametrize(
    ("exclude", "base", "message"),
    [
        (["server.example"], ("0.0.0.0/0",), "not an IP address"),
        (["203.0.113.7/24"], ("0.0.0.0/0",), "host bits set"),
        (["::1"], ("0.0.0.0/0",), "outside the base"),
        (["192.0.2.1"], ("198.51.100.0/24",), "outside the base"),
        (["192.0.2.1"], ("not-a-net",), "not an IP address"),
        (["fe80::1%eth0"], ("::/0",), "zone index"),
    ],
)
def test_bad_input(exclude: list[str], base: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        allowed_ips(exclude, base=base)


# -- the command line ------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["203.0.113.7"], capsys)
    assert (code, err) == (0, "")
    assert out == "AllowedIPs = " + ", ".join(allowed_ips(["203.0.113.7"])) + "\n"
    assert out.count("\n") == 1 and out.rstrip().endswith(", 224.0.0.0/3, ::/0")


def test_cli_list_and_base(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["-list", "-base", "10.0.0.0/8", "10.1.0.0/16"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == allowed_ips(["10.1.0.0/16"], base=["10.0.0.0/8"])
    assert out.splitlines()[0] == "10.0.0.0/16"
    code, out, _ = run(["--base", "192.0.2.0/24", "--base", "2001:db8::/32", "2001:db8::1"],
                       capsys)  # fmt: skip
    assert code == 0
    assert out.startswith("AllowedIPs = 192.0.2.0/24, 2001:db8::/128, 2001:db8::2/127,")


def test_cli_ipv6(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["2001:db8::7", "203.0.113.7"], capsys)
    assert (code, err) == (0, "")
    nets = parse(out.removeprefix("AllowedIPs = ").rstrip("\n").split(", "))
    assert not inside(ipaddress.ip_address("2001:db8::7"), nets)
    assert inside(ipaddress.ip_address("2001:db8::6"), nets)
    assert inside(ipaddress.ip_address("2001:db8::8"), nets)
    assert not inside(ipaddress.ip_address("203.0.113.7"), nets)
    assert sum(n.version == 6 for n in nets) == 128


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["server.example"], "host names are not resolved"),
        (["203.0.113.7", "bogus"], "bogus is not an IP address"),
        (["-base", "0.0.0.0/0", "::1"], "outside the base"),
        (["10.0.0.1/8"], "did you mean 10.0.0.0/8"),
        (["0.0.0.0/0", "::/0"], "nothing is left"),
        ([], "required"),
        (["-nosuchflag", "203.0.113.7"], "unrecognized arguments"),
    ],
)
def test_cli_bad_input(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("dtlspipe allowedips: ")
    assert needle in err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["-h"], capsys)
    assert code == 0
    assert "not resolved" in out and "-list" in out and "-base" in out


def test_helpers_can_fail() -> None:
    """``inside`` (which the properties rest on) tells an excluded address from a kept one,
    and the version check keeps an IPv4 address out of ::/0."""
    nets = parse(allowed_ips(["203.0.113.7"]))
    assert inside(ipaddress.ip_address("203.0.113.8"), nets)
    assert not inside(ipaddress.ip_address("203.0.113.7"), nets)
    assert not inside(ipaddress.ip_address("203.0.113.7"), parse(["::/0"]))


def test_the_dtlspipe_command_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    """``dtlspipe allowedips ...`` reaches this module, before the Go-style parser."""
    from dtlspipe.cli import main as dtlspipe_main

    assert dtlspipe_main(["allowedips", "-list", "203.0.113.7"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == allowed_ips(["203.0.113.7"])
    assert dtlspipe_main(["allowedips", "example.org"]) == 2
