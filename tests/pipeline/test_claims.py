"""Claims on cache entries as leases: owners identified beyond a process id, dead hosts' claims taken over."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from pipeline.cache import FeatureCache, feature_key, hash_text
from pipeline.claims import Claim, ClaimTable, Owner, current_owner, tag_owner_gone
from pipeline.system import process_start_time

KEY = feature_key(hash_text("clip"), "logmel", "1", {})


def other_host(name: str = "host-b") -> Owner:
    """A process on another machine (its host name differs, so its process id cannot be looked up here)."""
    return dataclasses.replace(current_owner(), host=name, pid=4242, start_time=1)


def write_claim(folder: Path, key: str, owner: Owner, expires_in: float) -> Claim:
    """Place a claim record as its owner would have written it."""
    now = time.time()
    claim = Claim(key=key, owner=owner, token="t" * 32, acquired=now, expires=now + expires_in,
                  lease_seconds=max(expires_in, 1.0))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / key).write_text(claim.to_json(), encoding="utf-8")
    return claim


def test_a_claim_records_host_boot_process_start_and_lease(tmp_path: Path) -> None:
    table = ClaimTable(tmp_path / "claims", lease_seconds=30.0)
    before = time.time()
    assert table.acquire(KEY)
    record = json.loads((tmp_path / "claims" / KEY).read_text())
    me = current_owner()
    assert record["owner"]["pid"] == os.getpid() and record["owner"]["host"] == me.host
    assert record["owner"]["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert record["owner"]["start_time"] == process_start_time(os.getpid()) is not None
    assert before + 30.0 <= record["expires"] <= time.time() + 30.0
    assert not table.acquire(KEY)                      # held by a live owner: ourselves
    table.release(KEY)
    assert table.holder(KEY) is None and table.held() == []


def test_a_reused_process_id_does_not_keep_a_claim(tmp_path: Path) -> None:
    """After a crash, the dead owner's pid now names another live process: the claim is taken over at once."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = current_owner()
        reused = dataclasses.replace(me, pid=sleeper.pid, start_time=process_start_time(sleeper.pid) - 1)
        write_claim(tmp_path / "claims", KEY, reused, expires_in=3600)     # its lease has not even expired
        table = ClaimTable(tmp_path / "claims")
        assert table.stale() == [KEY]
        assert table.acquire(KEY)
        assert table.holder(KEY).owner == me
        table.release(KEY)

        live = dataclasses.replace(me, pid=sleeper.pid, start_time=process_start_time(sleeper.pid))
        write_claim(tmp_path / "claims", KEY, live, expires_in=-10)        # the same process, lease long past
        assert table.stale() == [] and not table.acquire(KEY)               # alive on this machine: it holds it
    finally:
        sleeper.kill()
        sleeper.wait()
    assert table.stale() == [KEY] and table.acquire(KEY)                    # and once it is gone, it does not


def test_a_claim_from_before_a_reboot_is_judged_by_its_lease(tmp_path: Path) -> None:
    old_boot = dataclasses.replace(current_owner(), boot_id="0" * 36)     # pid and start time mean nothing now
    write_claim(tmp_path / "claims", KEY, old_boot, expires_in=-1)
    assert ClaimTable(tmp_path / "claims").acquire(KEY)


def test_another_hosts_claim_holds_until_its_lease_expires(tmp_path: Path) -> None:
    table = ClaimTable(tmp_path / "claims")
    write_claim(tmp_path / "claims", KEY, other_host(), expires_in=1.5)
    assert not table.acquire(KEY) and table.stale() == []
    time.sleep(1.6)                                                         # the host died: no renewal came
    assert table.stale() == [KEY]
    assert table.acquire(KEY) and table.holder(KEY).owner == current_owner()


def test_a_live_owner_renews_its_lease_so_other_hosts_keep_waiting(tmp_path: Path) -> None:
    mine = ClaimTable(tmp_path / "claims", lease_seconds=0.8, owner=other_host("host-a"))
    theirs = ClaimTable(tmp_path / "claims", lease_seconds=0.8, owner=other_host("host-b"))
    assert mine.acquire(KEY)
    first = mine.holder(KEY).expires
    time.sleep(2.0)                                                         # 2.5 leases: renewed every 0.2 s
    assert mine.holder(KEY).expires > first + 1.0
    assert not theirs.acquire(KEY)
    mine.release(KEY)
    assert theirs.acquire(KEY)


def test_two_hosts_on_one_cache_never_compute_an_entry_twice(tmp_path: Path) -> None:
    """Two simulated hosts (different host names) work through the same keys on one cache folder at once."""
    keys = [feature_key(hash_text(f"clip{i}"), "logmel", "1", {}) for i in range(40)]
    computed: dict[str, list[str]] = {k: [] for k in keys}

    def host(name: str) -> None:
        cache = FeatureCache(tmp_path / "cache")
        cache.claims = ClaimTable(tmp_path / "cache" / "claims", owner=other_host(name))
        pending = list(keys)
        while pending:
            still = []
            for k in pending:
                if k in cache:
                    continue
                if cache.claim(k):
                    try:
                        computed[k].append(name)
                        time.sleep(0.005)
                        cache.put(k, {"x": torch.full((2,), float(len(k)))}, {"extractor": "logmel"})
                    finally:
                        cache.release(k)
                else:
                    still.append(k)
            pending = still
            time.sleep(0.01)

    threads = [threading.Thread(target=host, args=(n,)) for n in ("host-a", "host-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(v) == 1 for v in computed.values()), {k: v for k, v in computed.items() if len(v) != 1}
    assert {v[0] for v in computed.values()} == {"host-a", "host-b"}         # both hosts did work
    assert not any((tmp_path / "cache" / "claims").iterdir())


def test_gc_and_verify_deal_with_dead_claims(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    gone = dataclasses.replace(current_owner(), pid=os.getpid(), start_time=(current_owner().start_time or 0) + 7)
    write_claim(cache.root / "claims", KEY, gone, expires_in=3600)
    live_key = feature_key(hash_text("other"), "logmel", "1", {})
    write_claim(cache.root / "claims", live_key, other_host(), expires_in=3600)
    assert cache.verify().stale_claims == [KEY]
    assert cache.gc()["claims"] == 1
    assert sorted(p.name for p in (cache.root / "claims").iterdir()) == [live_key]


def test_an_older_sentiflows_bare_pid_claim_expires_by_age(tmp_path: Path) -> None:
    folder = tmp_path / "claims"
    folder.mkdir()
    (folder / KEY).write_text(str(os.getpid()))
    table = ClaimTable(folder, lease_seconds=60)
    assert not table.acquire(KEY)                                           # young: may be computing
    old = time.time() - 120
    os.utime(folder / KEY, (old, old))
    assert table.acquire(KEY)


def test_temporaries_of_another_machine_are_left_to_gc(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    dead_here = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                               text=True, check=True).stdout.strip()
    mine = cache.root / "tmp" / f"{KEY}.{current_owner().machine}-{dead_here}.abcd1234"
    theirs = cache.root / "tmp" / f"{KEY}.{other_host().machine}-{dead_here}.abcd1234"
    for d in (mine, theirs):
        d.mkdir()
    assert tag_owner_gone(f"{current_owner().machine}-{dead_here}") is True
    assert tag_owner_gone(current_owner().tag) is False
    assert tag_owner_gone(f"{other_host().machine}-{dead_here}") is None
    cache.clean_stale_temp()
    assert not mine.exists() and theirs.exists()                  # its writer may be alive on its own host
    assert cache.gc(temp_older_than_s=0)["temp"] == 1 and not theirs.exists()
