#!/usr/bin/env python3
"""Writes a file: store directory holding N accounts with one live stream
each, in the very format the server journals (the JSON of `Account`), so a
restart at 10 M live streams can be timed without 10 M durable starts.

    python3 benches/fill_file_store.py DIR N [one|audience] [RENEWALS]

`one` (default): N one-stream accounts; ids are the load tool's: account
`acct-0001234567`, 22-character stream ids.

`audience`: N live streams in accounts of 1, 2 and 3 streams in turn (six
streams per three accounts), each with a device and a content id, laid out
so that `benches/load/audience.lua` can name any of them from its index:
stream i is `str-%012d` % i, in account `acct-%010d` % (3 * (i // 6) +
AUDIENCE_SLOT[i % 6]).

RENEWALS (audience only, default 0): that many entries per stream in
`renewal_log`, 30 s of deadline apart, the last one the lease's own: the
log a restart reads after heartbeats at the advised interval (a 90 s lease
renewed every 30 s keeps 3 to 6 per stream until the sweeps prune them).
"""
import json
import os
import sqlite3
import sys
import time

directory, count = sys.argv[1], int(sys.argv[2])
layout = sys.argv[3] if len(sys.argv) > 3 else "one"
renewals = int(sys.argv[4]) if len(sys.argv) > 4 else 0
# Which of its block's three accounts the stream at i % 6 belongs to.
AUDIENCE_SLOT = [0, 1, 1, 2, 2, 2]
os.makedirs(directory, exist_ok=True)
db = sqlite3.connect(os.path.join(directory, "streamguard.sqlite3"))
db.executescript(
    """PRAGMA journal_mode = WAL;
       PRAGMA synchronous = OFF;
       CREATE TABLE IF NOT EXISTS accounts (
           user_id TEXT PRIMARY KEY NOT NULL,
           state   BLOB NOT NULL
       ) WITHOUT ROWID;
       CREATE TABLE IF NOT EXISTS renewal_log (
           seq        INTEGER PRIMARY KEY,
           user_id    TEXT NOT NULL,
           stream_id  TEXT NOT NULL,
           expires_at INTEGER NOT NULL
       );"""
)
now = int(time.time() * 1000)


def one_stream_rows():
    for n in range(count):
        state = {
            "live": [
                {
                    "id": f"{n:08x}s{n * 2654435761 % 2**52:013x}",
                    "started_at": now,
                    "expires_at": now + 90_000,
                    "seq": 0,
                }
            ],
            "ended": [],
            "next_seq": 1,
        }
        yield (f"acct-{n:010}", json.dumps(state, separators=(",", ":")).encode())


def lease(i, seq):
    return {
        "id": f"str-{i:012d}",
        "device_id": f"dev-{i:012d}",
        "content_id": f"movie-{i % 5000}",
        "started_at": now,
        "expires_at": now + 90_000,
        "seq": seq,
    }


def audience_rows():
    account, streams = None, []
    for i in range(count):
        a = 3 * (i // 6) + AUDIENCE_SLOT[i % 6]
        if a != account and streams:
            yield row(account, streams)
            streams = []
        account = a
        streams.append(lease(i, len(streams)))
    if streams:
        yield row(account, streams)


def row(account, streams):
    state = {"live": streams, "ended": [], "next_seq": len(streams)}
    return (f"acct-{account:010}", json.dumps(state, separators=(",", ":")).encode())


def log_rows():
    for k in range(renewals):
        expires_at = now + 90_000 - 30_000 * (renewals - 1 - k)
        for i in range(count):
            account = 3 * (i // 6) + AUDIENCE_SLOT[i % 6]
            yield (f"acct-{account:010}", f"str-{i:012d}", expires_at)


rows = {"one": one_stream_rows, "audience": audience_rows}[layout]
assert renewals == 0 or layout == "audience", "RENEWALS needs the audience layout"
started = time.time()
with db:
    db.executemany("INSERT OR REPLACE INTO accounts VALUES (?, ?)", rows())
    db.executemany(
        "INSERT INTO renewal_log (user_id, stream_id, expires_at) VALUES (?, ?, ?)",
        log_rows(),
    )
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
print(f"{count} live streams and {count * renewals} log entries written in {time.time() - started:.0f} s")
