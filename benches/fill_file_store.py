#!/usr/bin/env python3
"""Writes a file: store directory holding N accounts with one live stream
each, in the very format the server journals (the JSON of `Account`), so a
restart at 10 M live streams can be timed without 10 M durable starts.

    python3 benches/fill_file_store.py DIR N

Ids are the load tool's: account `acct-0001234567`, 22-character stream ids.
"""
import json
import os
import sqlite3
import sys
import time

directory, count = sys.argv[1], int(sys.argv[2])
os.makedirs(directory, exist_ok=True)
db = sqlite3.connect(os.path.join(directory, "streamguard.sqlite3"))
db.executescript(
    """PRAGMA journal_mode = WAL;
       PRAGMA synchronous = OFF;
       CREATE TABLE IF NOT EXISTS accounts (
           user_id TEXT PRIMARY KEY NOT NULL,
           state   BLOB NOT NULL
       ) WITHOUT ROWID;"""
)
now = int(time.time() * 1000)


def rows():
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


started = time.time()
with db:
    db.executemany("INSERT OR REPLACE INTO accounts VALUES (?, ?)", rows())
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
print(f"{count} accounts written in {time.time() - started:.0f} s")
