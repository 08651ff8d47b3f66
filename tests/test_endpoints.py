"""hoppingclient endpoint groups: the Go program's grammar and its choice rule."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest

from dtlspipe.endpoints import (
    EndpointError,
    choose,
    is_domain_name,
    parse_group,
    parse_groups,
)


class ScriptedRandom(random.Random):
    """``randrange`` answers from a script, to pin down which term each draw selects."""

    def __new__(cls, answers: list[int]) -> ScriptedRandom:
        return super().__new__(cls)  # Python 3.10's Random.__new__ would seed from answers

    def __init__(self, answers: list[int]) -> None:
        super().__init__(0)
        self.answers = answers
        self.asked: list[int] = []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        self.asked.append(start if stop is None else stop - start)
        return self.answers.pop(0)


def test_domain_and_single_port() -> None:
    group = parse_group("example.com:443")
    assert [t.text for t in group.terms] == ["example.com"]
    assert (group.port_low, group.port_high, group.size) == (443, 443, 1)
    assert choose([group], random.Random(1)) == ("example.com", 443)


def test_mixed_terms_and_port_range() -> None:
    group = parse_group("example.com,10.0.0.1..10.0.0.9:1000-2000")
    assert [t.count for t in group.terms] == [1, 9]
    assert (group.port_low, group.port_high) == (1000, 2000)
    assert group.size == 10 * 1001


def test_go_help_examples() -> None:
    first, second = parse_groups(
        [
            "example.org:20000-50000",
            "192.168.0.0/16,10.0.0.0/8,172.16.0.0..172.31.255.255:50000-60000",
        ]
    )
    assert first.size == 30001
    assert [t.count for t in second.terms] == [2**16, 2**24, 2**20]
    # The Go help text writes the last range with "-"; we read it as the same range.
    dashed = parse_group("172.16.0.0-172.31.255.255:50000")
    assert dashed.terms[0].count == 2**20 and dashed.terms[0].first == second.terms[2].first


def test_colon_inside_the_address_list_is_not_a_separator() -> None:
    # The group splits at its last colon only: "host:port" terms are not allowed.
    with pytest.raises(EndpointError):
        parse_group("example.com:443,10.0.0.1..10.0.0.9:1000-2000")


def test_prefixes_are_masked_and_full_length_is_single() -> None:
    group = parse_group("10.1.2.3/8:1")
    assert group.terms[0].first == int(ipaddress.IPv4Address("10.0.0.0"))
    assert group.terms[0].count == 2**24
    single = parse_group("10.1.2.3/32,2001:db8::5/128:1")
    assert [t.count for t in single.terms] == [1, 1]
    assert choose([single], ScriptedRandom([0, 1, 0])) == ("2001:db8::5", 1)


def test_reversed_ranges_and_ports() -> None:
    forward = parse_group("10.0.0.1..10.0.0.9:1000-2000")
    backward = parse_group("10.0.0.9..10.0.0.1:2000-1000")
    assert forward.terms[0].first == backward.terms[0].first
    assert forward.terms[0].count == backward.terms[0].count == 9
    assert (backward.port_low, backward.port_high) == (1000, 2000)


def test_ipv6_forms() -> None:
    assert choose([parse_group("::1:53")], random.Random(0)) == ("::1", 53)
    assert choose([parse_group("[2001:db8::1]:443")], random.Random(0)) == ("2001:db8::1", 443)
    group = parse_group("2001:db8::1..[2001:db8::ff],[2001:db8:1::]/126:53")
    assert [t.count for t in group.terms] == [255, 4]
    rng = random.Random(5)
    for _ in range(200):
        host, port = group.choose(rng)
        addr = ipaddress.IPv6Address(host)
        assert port == 53
        low, high = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8::ff")
        assert low <= addr <= high or addr in ipaddress.IPv6Network("2001:db8:1::/126")


def test_huge_prefixes_are_not_enumerated() -> None:
    group = parse_group("2001:db8::/32:443")
    assert group.size == 2**96
    net = ipaddress.IPv6Network("2001:db8::/32")
    rng = random.Random(11)
    hosts = {choose([group], rng)[0] for _ in range(1000)}
    assert len(hosts) == 1000  # 2**96 addresses: repeats would mean a broken draw
    assert all(ipaddress.IPv6Address(h) in net for h in hosts)
    everything = parse_group("::/0,0.0.0.0/0:1-65535")
    assert everything.size == (2**128 + 2**32) * 65535
    everything.choose(rng)


def test_zone_index_on_a_single_address() -> None:
    assert choose([parse_group("fe80::1%eth0:51820")], random.Random(0)) == ("fe80::1%eth0", 51820)


def test_weights_pick_terms_by_size() -> None:
    # Terms of sizes 2 and 1: running sums (2, 3). Draws 0 and 1 land in the prefix, 2 in
    # the name, exactly as Go's binary search over the cumulative weights.
    group = parse_group("10.0.0.0/31,x.example:7")
    assert group.cumulative == (2, 3)
    assert group.choose(ScriptedRandom([0, 1, 0])) == ("10.0.0.1", 7)
    assert group.choose(ScriptedRandom([1, 0, 0])) == ("10.0.0.0", 7)
    assert group.choose(ScriptedRandom([2, 0])) == ("x.example", 7)
    rng = ScriptedRandom([1, 2, 0])  # group 1 of 2, then draw 2 of 3, then port 0 of 1
    assert choose([parse_group("a.example:1"), group], rng) == ("x.example", 7)
    assert rng.asked == [2, 3, 1]


def test_probabilities_with_a_fixed_seed() -> None:
    single = parse_group("a.example:1000-1003")
    mixed = parse_group("10.0.0.0/30,b.example:2")  # weights 4 : 1
    rng = random.Random(20240501)
    draws = 40000
    counts = Counter(choose([single, mixed], rng) for _ in range(draws))
    hosts = Counter[str]()
    for (host, _), n in counts.items():
        hosts[host] += n
    group_a = hosts["a.example"]
    assert abs(group_a / draws - 0.5) < 0.02  # groups: equal probability
    in_mixed = draws - group_a
    assert abs(hosts["b.example"] / in_mixed - 0.2) < 0.02  # a name counts as one address
    for i in range(4):  # each address of the /30 as likely as the name
        assert abs(hosts[f"10.0.0.{i}"] / in_mixed - 0.2) < 0.02
    for port in range(1000, 1004):  # ports: uniform over the range
        assert abs(counts[("a.example", port)] / group_a - 0.25) < 0.02


def test_same_seed_same_choices() -> None:
    groups = parse_groups(["2001:db8::/32:1-65535", "example.org,10.0.0.0/8:443"])
    first = [choose(groups, random.Random(99)) for _ in range(3)]
    again = [choose(groups, random.Random(99)) for _ in range(3)]
    assert first == again


@pytest.mark.parametrize(
    "spec",
    [
        "example.com",  # no port
        "a:0",
        "a:65536",
        "a:1-2-3",
        "a:x",
        "a:",
        ":1",
        ",a:1",
        "a,,b:1",
        "10.0.0.1..::1:1",
        "10.0.0.1/33:1",
        "10.0.0.1/08:1",
        "10.0.0.1/:1",
        "10.0.0.256:1",
        "bad host:1",
        "10.0.0.1..nothost:1",
        "fe80::1%eth0/64:1",
        "[]:1",
        "-a.example:1",
    ],
)
def test_bad_groups(spec: str) -> None:
    with pytest.raises(EndpointError):
        parse_group(spec)


def test_no_groups() -> None:
    with pytest.raises(EndpointError):
        parse_groups([])
    with pytest.raises(EndpointError):
        choose([], random.Random(0))


@pytest.mark.parametrize(
    ("name", "ok"),
    [("example.org", True), ("a-b.example.", True), ("_dns.example", True),
     ("localhost", True), ("10.0.0.256", False), ("a..b", False), ("-a.b", False),
     ("a" * 64 + ".b", False), ("", False)],
)  # fmt: skip
def test_domain_names(name: str, ok: bool) -> None:
    assert is_domain_name(name) is ok
