"""Seeded worlds of the ``cid``, ``dhe`` and ``resume`` targets, and their seed corpora.

As in :mod:`fuzz.corpus`, everything is deterministic (seeded randomness, a fake clock),
so a datagram recorded in a world is still *valid* when a target rebuilds the same
world: a recorded ``path_response`` echoes the cookie the rebuilt server draws, a
recorded resumed Finished verifies against the rebuilt server's randoms.

- :mod:`fuzz.worlds.common`: what the worlds and the targets share: the server's
  connections with the events the endpoint attributes to them (``ServerLog``), the
  checks of its output after a step and of its connections at the end, the checked
  seeded pair (``CheckedPair``) and its helpers, readers and writers of the wire;
- :mod:`fuzz.worlds.cid`: ``CidWorld``, RFC 9146 connection IDs and RFC 9853 return
  routability, with an authenticity oracle and both receive paths compared;
  :mod:`fuzz.worlds.cid_seeds`: the ``cid`` and ``cid_records`` seeds;
- :mod:`fuzz.worlds.dhe`: DHE_PSK pairs (RFC 4279 §3, RFC 7919), the outcome oracles,
  the seeds;
- :mod:`fuzz.worlds.resume`: ``ResumeWorld``, resumption by session ID (RFC 5246 §7.3);
  :mod:`fuzz.worlds.resume_finished`: its Finished oracle, from the wire alone;
  :mod:`fuzz.worlds.resume_seeds`: the ``resume`` seeds.
"""
