#!/usr/bin/env python3
"""DynamoDB request units per operation, computed from item sizes (the
emulator, moto, reports a fixed 1.0 whatever the size), for the old
single-item layout and the item-per-lease layout.

Sizes follow DynamoDB's rules: an item is the sum of its attribute names'
and values' lengths (a number: 1 byte per 2 significant digits, + 1).
Reads: 1 RCU per 4 KB (strongly consistent; a Query sums its items before
rounding). Writes: 1 WCU per 1 KB of the larger of the old and new item;
in a transaction, 2x. Usage: python3 benches/dynamodb-units.py
"""
import json
import math

T0 = 1_800_000_000_000


def num(n):
    digits = len(str(abs(int(n))).rstrip("0")) or 1
    return math.ceil(digits / 2) + 1


def size(item):
    total = 0
    for name, value in item.items():
        total += len(name)
        total += num(value) if isinstance(value, int) else len(value.encode())
    return total


def ids(width, n, tag):
    return f"{tag}{n}".rjust(width, "0")


def account(leases, tombstones, width):
    live = []
    for i in range(leases):
        lease = {"id": ids(width, i, "s"), "started_at": T0, "expires_at": T0 + 90_000, "seq": i}
        if width > 20:
            lease["device_id"] = ids(width, i, "d")
            lease["content_id"] = ids(width, i, "c")
        else:
            lease["device_id"] = f"device-{i}"
            lease["content_id"] = f"movie-{i}"
        live.append(lease)
    ended = [{"id": ids(width, i, "e"), "reason": "stopped", "ended_at": T0} for i in range(tombstones)]
    return live, ended


def user():
    return "u" * 36


def old_item(live, ended):
    state = json.dumps({"live": live, "ended": ended, "next_seq": len(live)}, separators=(",", ":"))
    return {"pk": user(), "state": state, "version": 12345, "ttl": 1_800_000_990}


def new_account_item(live, ended):
    item = {"pk": user(), "sk": "#account", "version": 12345, "next_seq": len(live), "ttl": 1_800_000_990}
    if ended:
        item["ended"] = json.dumps(ended, separators=(",", ":"))
    return item


def new_lease_item(lease):
    item = {"pk": user(), "sk": "lease#" + lease["id"], "started_at": lease["started_at"],
            "expires_at": lease["expires_at"], "seq": lease["seq"], "ttl": 1_800_000_990}
    for k in ("device_id", "content_id"):
        if k in lease:
            item[k] = lease[k]
    return item


def rcu(nbytes):
    return math.ceil(nbytes / 4096)


def wcu(nbytes):
    return math.ceil(nbytes / 1024)


def report(name, leases, tombstones, width):
    live, ended = account(leases, tombstones, width)
    old = size(old_item(live, ended))
    acct = size(new_account_item(live, ended))
    lease = size(new_lease_item(live[-1]))
    partition = acct + sum(size(new_lease_item(l)) for l in live)
    print(f"\n{name}: old item {old / 1024:.1f} KB"
          + (" (over the 400 KB item cap: cannot be stored)" if old > 400 * 1024 else "")
          + f"; new account item {acct / 1024:.1f} KB, lease item {lease} B")
    print(f"  {'operation':44} {'old RCU/WCU':>12} {'new RCU/WCU':>12}")
    rows = [
        ("heartbeat (renewed)", (rcu(old), wcu(old)), (0, wcu(lease))),
        ("heartbeat of an ended stream (410)", (rcu(old), 0), (rcu(partition), wcu(lease))),
        ("start, granted, nothing ended", (rcu(old), wcu(old)),
         (rcu(partition), 2 * (wcu(acct) + wcu(lease)))),
        ("start, granted, evicting one", (rcu(old), wcu(old)),
         (rcu(partition), 2 * (wcu(acct) + 2 * wcu(lease)))),
        ("start, refused (409)", (rcu(old), 0), (rcu(partition), 0)),
        ("stop", (rcu(old), wcu(old)), (rcu(partition), 2 * (wcu(acct) + wcu(lease)))),
        ("list (GET /streams)", (rcu(old), 0), (rcu(partition), 0)),
    ]
    for op, (o_r, o_w), (n_r, n_w) in rows:
        print(f"  {op:44} {o_r:>5} / {o_w:<5} {n_r:>5} / {n_w:<5}")


report("3 streams, short ids, 5 tombstones", 3, 5, 10)
report("1000 streams, 128-character ids, 100 tombstones", 1000, 100, 128)
report("790 streams, 128-character ids, 100 tombstones", 790, 100, 128)
